package pushgw

import (
	"bufio"
	"io"
	"slices"
	"strings"
)

// exposeBufferSize is the write buffer of WriteTo: the header lines and
// small families gather in it; larger families' lines go to w directly.
const exposeBufferSize = 64 << 10

// familyHeader is what WriteTo prints before a family's lines.
type familyHeader struct {
	name, typ, help string
	hasHelp         bool
}

// WriteTo writes every live series in the text format (0.0.4): families
// sorted by name, each with one HELP (the first seen) and one TYPE, then
// the lines of every live instance holding it, instances sorted by project,
// job and instance; no timestamps. Call Expire before, so that expired
// instances are left out.
func (s *Store) WriteTo(w io.Writer) (int64, error) {
	type keyed struct {
		key  instanceKey
		snap *Snapshot
	}
	s.mu.RLock()
	snaps := make([]keyed, 0, len(s.instances))
	for key, in := range s.instances {
		if in.snap != nil {
			snaps = append(snaps, keyed{key, in.snap})
		}
	}
	headers := make([]familyHeader, 0, len(s.families))
	for name, info := range s.families {
		headers = append(headers, familyHeader{name: name, typ: info.typ, help: info.help, hasHelp: info.hasHelp})
	}
	s.mu.RUnlock()

	slices.SortFunc(snaps, func(a, b keyed) int { return a.key.compare(b.key) })
	slices.SortFunc(headers, func(a, b familyHeader) int { return strings.Compare(a.name, b.name) })
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, exposeBufferSize)
	next := make([]int, len(snaps)) // per snapshot, its first family not written yet
	for _, h := range headers {
		if h.hasHelp {
			bw.WriteString("# HELP ")
			bw.WriteString(h.name)
			bw.WriteByte(' ')
			bw.WriteString(h.help)
			bw.WriteByte('\n')
		}
		bw.WriteString("# TYPE ")
		bw.WriteString(h.name)
		bw.WriteByte(' ')
		bw.WriteString(h.typ)
		bw.WriteByte('\n')
		for i, k := range snaps {
			fams := k.snap.families
			j := next[i]
			for j < len(fams) && fams[j].name < h.name {
				j++
			}
			if j < len(fams) && fams[j].name == h.name {
				bw.Write(fams[j].lines)
				j++
			}
			next[i] = j
		}
		if cw.err != nil {
			return cw.n, cw.err
		}
	}
	err := bw.Flush()
	return cw.n, err
}

// countingWriter counts what reaches w and keeps its first error.
type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}
