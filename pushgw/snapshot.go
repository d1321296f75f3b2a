package pushgw

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/bitville/bitville-apm/internal/push"
)

// Meta is what the headers of a metrics push say about its body.
type Meta struct {
	Project, Job, Instance string
	Batch                  push.BatchID
	Time                   time.Time     // Bitville-Time: when the snapshot was gathered
	Interval               time.Duration // Bitville-Interval, 0 when absent
}

// Label is one label of a sample.
type Label struct{ Name, Value string }

// Snapshot is one parsed metrics push, immutable once Parse returns it. It
// holds each family's sample lines already rendered as /metrics prints them,
// with the final labels, and nothing else per series: the Store keeps it as
// it is, and EachSample reads the rendered lines back.
//
// Label order of a rendered line: the pushed labels in the order pushed, a
// pushed job, instance or project whose value differs from the push's
// renamed in place to exported_<name>; then job, instance and project, in
// that order, for each not already pushed with the same value.
type Snapshot struct {
	Meta      Meta
	Series    int // samples, each bucket, sum and count counted
	Rewritten int // series that carried a job, instance or project label of another value

	families []family // sorted by name, names unique
}

// family is one metric family of a snapshot.
type family struct {
	name    string
	help    string // escaped as printed; meaningful when hasHelp
	hasHelp bool
	typ     string // counter, gauge, histogram, summary or untyped
	series  int
	lines   []byte // "name{labels} value\n" for each sample, in pushed order
}

// EachSample calls fn for every sample of s: labels sorted by name
// (bytewise) with __name__ included. The slice is only valid during the
// call; the strings stay valid.
func (s *Snapshot) EachSample(fn func(labels []Label, value float64)) {
	var ls []Label
	for i := range s.families {
		lines := s.families[i].lines
		for len(lines) > 0 {
			end := strings.IndexByte(bytesString(lines), '\n')
			ls = appendRenderedLabels(ls[:0], lines[:end])
			sortLabels(ls)
			fn(ls, lastValue(lines[:end]))
			lines = lines[end+1:]
		}
	}
}

// appendRenderedLabels appends __name__ and the labels of a line rendered by
// Parse. The strings alias the line, which is never changed, unless a value
// needs unescaping.
func appendRenderedLabels(ls []Label, line []byte) []Label {
	i := 0
	for i < len(line) && line[i] != '{' && line[i] != ' ' {
		i++
	}
	ls = append(ls, Label{Name: "__name__", Value: bytesString(line[:i])})
	if line[i] != '{' {
		return ls
	}
	i++
	for line[i] != '}' {
		start := i
		for line[i] != '=' {
			i++
		}
		name := bytesString(line[start:i])
		i += 2 // ="
		start = i
		escaped := false
		for line[i] != '"' {
			if line[i] == '\\' {
				escaped = true
				i++
			}
			i++
		}
		value := bytesString(line[start:i])
		if escaped {
			value = unescapeLabelValue(value)
		}
		ls = append(ls, Label{Name: name, Value: value})
		i++ // "
		if line[i] == ',' {
			i++
		}
	}
	return ls
}

// lastValue parses the value that ends a rendered line.
func lastValue(line []byte) float64 {
	i := len(line) - 1
	for line[i] != ' ' {
		i--
	}
	v, err := strconv.ParseFloat(bytesString(line[i+1:]), 64)
	if err != nil {
		return math.NaN() // unreachable: Parse wrote the value
	}
	return v
}

// unescapeLabelValue undoes the escapes \\, \" and \n of a label value.
func unescapeLabelValue(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			i++
			if c = s[i]; c == 'n' {
				c = '\n'
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// sortLabels sorts a short label list by name in place (insertion sort:
// no allocation, and pushed labels often come sorted already).
func sortLabels(ls []Label) {
	for i := 1; i < len(ls); i++ {
		for j := i; j > 0 && ls[j].Name < ls[j-1].Name; j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}
}

// bytesString views b as a string without copying; only for bytes that are
// never changed afterwards (a snapshot's lines) or not kept.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
