package pushgw

import (
	"bufio"
	"bytes"
	"io"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// exposeBufferSize is the write buffer of WriteTo: the header lines and
// small families gather in it; larger families' lines go to w directly.
const exposeBufferSize = 64 << 10

// familyHeader is what WriteTo prints before a family's lines.
type familyHeader struct {
	name, typ, help string
	hasHelp         bool
	own             []byte // the gateway's own samples of this name, printed first
	ownOnly         bool   // the pushed family has another type: only the own samples
}

// WriteTo writes every live series in the text format (0.0.4): families
// sorted by name, each with one HELP (the first seen) and one TYPE, then
// the lines of every live instance holding it, instances sorted by project,
// job and instance; no timestamps. Call Expire before, so that expired
// instances are left out.
func (s *Store) WriteTo(w io.Writer) (int64, error) { return s.WriteWith(w, nil) }

// WriteWith is WriteTo with own, the gateway's self-metrics, merged in:
// a family both hold is printed once, with the HELP and TYPE of own and its
// samples first (they cannot collide with pushed ones, which always carry
// job, instance and project). Pushed samples of a family whose type differs
// from own's are left out.
func (s *Store) WriteWith(w io.Writer, own []*dto.MetricFamily) (int64, error) {
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

	headers, err := mergeOwn(headers, own)
	if err != nil {
		return 0, err
	}
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
		bw.Write(h.own)
		for i, k := range snaps {
			fams := k.snap.families
			j := next[i]
			for j < len(fams) && fams[j].name < h.name {
				j++
			}
			if j < len(fams) && fams[j].name == h.name && !h.ownOnly {
				bw.Write(fams[j].lines)
				j++
			}
			next[i] = j
		}
		if cw.err != nil {
			return cw.n, cw.err
		}
	}
	err = bw.Flush()
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

// mergeOwn adds the gateway's own families to the pushed families'
// headers, their samples rendered.
func mergeOwn(headers []familyHeader, own []*dto.MetricFamily) ([]familyHeader, error) {
	if len(own) == 0 {
		return headers, nil
	}
	index := make(map[string]int, len(headers))
	for i, h := range headers {
		index[h.name] = i
	}
	var buf bytes.Buffer
	for _, mf := range own {
		buf.Reset()
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			return nil, err
		}
		h := familyHeader{name: mf.GetName(), typ: strings.ToLower(mf.GetType().String()), help: helpEscaper.Replace(mf.GetHelp()), hasHelp: mf.Help != nil}
		h.own = ownSamples(buf.Bytes())
		if i, ok := index[h.name]; ok {
			h.ownOnly = headers[i].typ != h.typ
			headers[i] = h
			continue
		}
		headers = append(headers, h)
	}
	return headers, nil
}

// ownSamples are the sample lines of one rendered family, its HELP and
// TYPE lines left out.
func ownSamples(text []byte) []byte {
	var out []byte
	for len(text) > 0 {
		line, rest, _ := bytes.Cut(text, []byte{'\n'})
		text = rest
		if len(line) > 0 && line[0] != '#' {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

// helpEscaper escapes a HELP text as the text format wants it.
var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
