package pgexporter

// labelValues bounds the values of one label: the first limit values seen
// keep a label of their own, later ones are counted as "other".
type labelValues struct {
	limit int
	seen  map[string]bool
}

func newLabelValues(limit int) *labelValues {
	return &labelValues{limit: limit, seen: map[string]bool{}}
}

// label returns v when it has, or can still get, a label of its own, else
// "other" and false.
func (l *labelValues) label(v string) (string, bool) {
	if l.seen[v] {
		return v, true
	}
	if len(l.seen) < l.limit {
		l.seen[v] = true
		return v, true
	}
	return "other", false
}
