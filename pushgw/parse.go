package pushgw

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The names of the labels every pushed series gets, in the order they are
// appended to a rendered line.
var addedLabelNames = [...]string{"job", "instance", "project"}

// exportedPrefix renames a pushed label that the gateway sets itself, as
// Prometheus does for a scrape with honor_labels false.
const exportedPrefix = "exported_"

// quoteMax bounds how much of a pushed text an error message quotes.
const quoteMax = 64

// Parse reads the text exposition format (0.0.4) from body (already
// decompressed and size-bounded by the caller), validates it against lim and
// meta (the timestamp window against now), adds the labels job, instance and
// project, and returns a Snapshot or a *Rejection, never a partial result.
// It stops reading as soon as the body passes lim.MaxSeriesPerPush.
func Parse(body []byte, meta Meta, lim Limits, now time.Time) (*Snapshot, error) {
	if meta.Time.Before(now.Add(-lim.MaxSampleAge)) {
		return nil, invalid(ReasonAncientTimestamp, fmt.Errorf("cannot take a snapshot gathered at %s: older than %s", meta.Time.UTC().Format(time.RFC3339Nano), lim.MaxSampleAge))
	}
	if meta.Time.After(now.Add(lim.MaxClockSkew)) {
		return nil, invalid(ReasonFutureTimestamp, fmt.Errorf("cannot take a snapshot gathered at %s: more than %s ahead of the gateway's clock", meta.Time.UTC().Format(time.RFC3339Nano), lim.MaxClockSkew))
	}
	p := parser{lim: lim, seen: map[string]string{}, seed: maphash.MakeSeed(), keyIndex: map[uint64]keyRef{}}
	p.buf = make([]byte, 0, 2*len(body)) // the added labels rarely double a line
	for i, name := range addedLabelNames {
		p.added[i] = addedLabel{name: []byte(name), value: appendEscapedLabelValue(nil, [...]string{meta.Job, meta.Instance, meta.Project}[i])}
	}
	if err := p.parse(body); err != nil {
		return nil, err
	}
	return p.snapshot(meta), nil
}

// parser holds the state of one Parse call.
type parser struct {
	lim   Limits
	added [len(addedLabelNames)]addedLabel
	lineN int

	buf       []byte            // rendered lines of every family
	fams      []parsedFamily    // finished families with samples
	cur       parsedFamily      // the family being read; name "" before the first
	seen      map[string]string // family name → type, of every family started
	seed      maphash.Seed
	keyIndex  map[uint64]keyRef   // series identity hash → its key in keyArena
	keyArena  []byte              // the identities of the series read
	keyEnds   []int               // where each identity ends in keyArena
	collided  map[string]struct{} // identities whose hash another one had first
	series    int
	rewritten int

	labels []rawLabel // scratch: the labels of the current line
	final  []rawLabel // scratch: its final labels
	sorted []rawLabel // scratch: them sorted by name
	key    []byte     // scratch: its canonical identity
}

// keyRef finds a key in parser.keyArena: it follows keyEnds[prev] (or
// starts the arena when prev is -1) and ends at keyEnds[prev+1].
type keyRef struct{ prev int }

type addedLabel struct{ name, value []byte } // value escaped

// rawLabel is a label of the line being read; value is escaped as written,
// which is also how it is printed.
type rawLabel struct{ name, value []byte }

type parsedFamily struct {
	name, help, typ  string
	hasHelp, hasType bool
	series           int
	start, end       int // of its lines in parser.buf
}

func (p *parser) fail(reason, format string, args ...any) *Rejection {
	return invalid(reason, fmt.Errorf("cannot read metrics line %d: %s", p.lineN, fmt.Sprintf(format, args...)))
}

func (p *parser) parse(body []byte) error {
	for len(body) > 0 {
		p.lineN++
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		line = trimBlankLeft(line)
		var err error
		switch {
		case len(line) == 0:
		case line[0] == '#':
			err = p.comment(line[1:])
		default:
			err = p.sample(line)
		}
		if err != nil {
			return err
		}
	}
	p.finish()
	return nil
}

// comment reads a line after its '#': HELP, TYPE or a comment to ignore.
func (p *parser) comment(line []byte) error {
	line = trimBlankLeft(line)
	word, rest := token(line)
	isHelp := string(word) == "HELP"
	if !isHelp && string(word) != "TYPE" {
		return nil
	}
	name, rest := token(trimBlankLeft(rest))
	if len(name) == 0 {
		return p.fail(ReasonMalformed, "%s without a metric name", word)
	}
	if !validMetricName(name) {
		return p.fail(ReasonMetricName, "metric name %s is invalid", quote(name))
	}
	if len(rest) > 0 && !isBlank(rest[0]) {
		return p.fail(ReasonMalformed, "%s: metric name %s is followed by %s", word, quote(name), quote(rest))
	}
	if err := p.enterDeclared(name); err != nil {
		return err
	}
	rest = trimBlankLeft(rest)
	if isHelp {
		if p.cur.hasHelp {
			return p.fail(ReasonMalformed, "second HELP for %s", quote(name))
		}
		if err := p.checkHelp(rest); err != nil {
			return err
		}
		p.cur.help, p.cur.hasHelp = string(rest), true
		return nil
	}
	if p.cur.hasType {
		return p.fail(ReasonMalformed, "second TYPE for %s", quote(name))
	}
	if p.cur.series > 0 {
		return p.fail(ReasonMalformed, "TYPE for %s after its samples", quote(name))
	}
	typ, after := token(rest)
	if len(trimBlankLeft(after)) > 0 {
		return p.fail(ReasonMalformed, "TYPE for %s is followed by %s", quote(name), quote(after))
	}
	switch string(typ) {
	case "counter", "gauge", "untyped":
	case "histogram", "summary":
		for _, suffix := range [...]string{"_bucket", "_sum", "_count"} {
			if _, ok := p.seen[p.cur.name+suffix]; ok {
				return p.fail(ReasonMalformed, "%s family %s comes after samples named %s", typ, quote(name), quote([]byte(p.cur.name+suffix)))
			}
		}
	default:
		return p.fail(ReasonMalformed, "unknown type %s for %s", quote(typ), quote(name))
	}
	p.cur.typ, p.cur.hasType = string(typ), true
	p.seen[p.cur.name] = p.cur.typ
	return nil
}

// enterDeclared makes name, just named by HELP or TYPE, the current family.
func (p *parser) enterDeclared(name []byte) error {
	if p.cur.name == string(name) {
		return nil
	}
	return p.start(name)
}

// start finishes the current family and begins the untyped family name,
// unless name was seen before: a family's lines must be together.
func (p *parser) start(name []byte) error {
	if _, ok := p.seen[string(name)]; ok {
		return p.fail(ReasonMalformed, "family %s appears again after other families", quote(name))
	}
	for _, sfx := range [...]string{"_bucket", "_sum", "_count"} {
		base, ok := bytes.CutSuffix(name, []byte(sfx))
		if !ok {
			continue
		}
		if t := p.seen[string(base)]; t == "histogram" || t == "summary" && sfx != "_bucket" {
			return p.fail(ReasonMalformed, "samples %s of %s family %s are not together with it", quote(name), t, quote(base))
		}
	}
	p.finish()
	p.cur = parsedFamily{name: string(name), typ: "untyped", start: len(p.buf)}
	p.seen[p.cur.name] = p.cur.typ
	return nil
}

func (p *parser) finish() {
	if p.cur.series > 0 {
		p.cur.end = len(p.buf)
		p.fams = append(p.fams, p.cur)
	}
	p.cur = parsedFamily{}
}

// checkHelp accepts a HELP text with the escapes \\ and \n only.
func (p *parser) checkHelp(text []byte) error {
	if !utf8.Valid(text) {
		return p.fail(ReasonMalformed, "HELP is not valid UTF-8")
	}
	for i := 0; i < len(text); i++ {
		if text[i] != '\\' {
			continue
		}
		if i+1 == len(text) || (text[i+1] != '\\' && text[i+1] != 'n') {
			return p.fail(ReasonMalformed, "HELP has an invalid escape sequence")
		}
		i++
	}
	return nil
}

// sample reads a sample line.
func (p *parser) sample(line []byte) error {
	i := 0
	for i < len(line) && line[i] != '{' && !isBlank(line[i]) {
		i++
	}
	name := line[:i]
	if !validMetricName(name) {
		return p.fail(ReasonMetricName, "metric name %s is invalid", quote(name))
	}
	rest := trimBlankLeft(line[i:])
	p.labels = p.labels[:0]
	if len(rest) > 0 && rest[0] == '{' {
		var err error
		if rest, err = p.readLabels(rest[1:]); err != nil {
			return err
		}
		if len(rest) > 0 && !isBlank(rest[0]) {
			return p.fail(ReasonMalformed, "no blank between the labels and the value of %s", quote(name))
		}
	}
	valueText, rest := token(trimBlankLeft(rest))
	if len(valueText) == 0 {
		return p.fail(ReasonMalformed, "sample %s has no value", quote(name))
	}
	value, err := parseValue(valueText)
	if err != nil {
		return p.fail(ReasonMalformed, "value %s of %s: %v", quote(valueText), quote(name), err)
	}
	if extra, after := token(trimBlankLeft(rest)); len(extra) > 0 {
		if _, err := strconv.ParseInt(string(extra), 10, 64); err == nil && len(trimBlankLeft(after)) == 0 {
			return p.fail(ReasonSampleTimestamp, "sample %s carries a timestamp; the push's Bitville-Time is its time", quote(name))
		}
		return p.fail(ReasonMalformed, "sample %s is followed by %s", quote(name), quote(rest))
	}
	if err := p.enterSample(name); err != nil {
		return err
	}
	if value < 0 && p.cur.typ == "histogram" && !bytes.HasSuffix(name, []byte("_sum")) {
		return p.fail(ReasonMalformed, "histogram count %s is negative", quote(name))
	}
	p.series++
	if p.series > p.lim.MaxSeriesPerPush {
		return tooLarge(ReasonSeriesLimit, fmt.Errorf("cannot take a push of more than %d series (at line %d)", p.lim.MaxSeriesPerPush, p.lineN))
	}
	return p.render(name, value)
}

// readLabels reads the labels after '{' into p.labels and returns what
// follows the '}'.
func (p *parser) readLabels(s []byte) ([]byte, error) {
	for {
		s = trimBlankLeft(s)
		if len(s) > 0 && s[0] == '}' {
			return s[1:], nil
		}
		i := 0
		for i < len(s) && isLabelNameByte(s[i], i == 0) {
			i++
		}
		name := s[:i]
		if len(name) == 0 {
			if len(s) == 0 {
				return nil, p.fail(ReasonMalformed, "labels not closed with '}'")
			}
			return nil, p.fail(ReasonLabelName, "invalid label name starting at %s", quote(s))
		}
		if len(name) >= 2 && name[0] == '_' && name[1] == '_' {
			return nil, p.fail(ReasonLabelName, "label name %s is reserved (starts with __)", quote(name))
		}
		s = trimBlankLeft(s[i:])
		if len(s) == 0 || s[0] != '=' {
			if len(s) > 0 && !isBlank(s[0]) && s[0] != '=' && s[0] != '}' && s[0] != ',' && s[0] != '"' {
				return nil, p.fail(ReasonLabelName, "invalid label name starting at %s", quote(name))
			}
			return nil, p.fail(ReasonMalformed, "label %s without '='", quote(name))
		}
		s = trimBlankLeft(s[1:])
		if len(s) == 0 || s[0] != '"' {
			return nil, p.fail(ReasonMalformed, "value of label %s is not quoted", quote(name))
		}
		s = s[1:]
		j, escapes := 0, 0
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] != '\\' {
				continue
			}
			if j+1 == len(s) || (s[j+1] != '\\' && s[j+1] != '"' && s[j+1] != 'n') {
				return nil, p.fail(ReasonMalformed, "value of label %s has an invalid escape sequence", quote(name))
			}
			j++
			escapes++
		}
		if j == len(s) {
			return nil, p.fail(ReasonMalformed, "value of label %s is not closed with '\"'", quote(name))
		}
		value := s[:j]
		if !utf8.Valid(value) {
			return nil, p.fail(ReasonMalformed, "value of label %s is not valid UTF-8", quote(name))
		}
		if len(value)-escapes > p.lim.MaxLabelValueBytes {
			return nil, p.fail(ReasonLabelValueTooLong, "value of label %s is %d bytes, more than %d", quote(name), len(value)-escapes, p.lim.MaxLabelValueBytes)
		}
		for _, l := range p.labels {
			if bytes.Equal(l.name, name) {
				return nil, p.fail(ReasonDuplicateSeries, "label %s appears twice in one series", quote(name))
			}
		}
		if len(p.labels) == p.lim.MaxLabels {
			return nil, p.fail(ReasonTooManyLabels, "series has more than %d labels", p.lim.MaxLabels)
		}
		p.labels = append(p.labels, rawLabel{name: name, value: value})
		s = trimBlankLeft(s[j+1:])
		switch {
		case len(s) > 0 && s[0] == ',':
			s = s[1:]
		case len(s) > 0 && s[0] == '}':
		default:
			return nil, p.fail(ReasonMalformed, "label %s is followed by neither ',' nor '}'", quote(name))
		}
	}
}

// enterSample finds the family of a sample named name, starting a new one
// when it belongs to none, and checks what its type requires.
func (p *parser) enterSample(name []byte) error {
	c := &p.cur
	belongs, suffix := false, ""
	switch {
	case c.name == "":
	case string(name) == c.name:
		belongs = c.typ != "histogram"
	case (c.typ == "histogram" || c.typ == "summary") && len(name) > len(c.name) && string(name[:len(c.name)]) == c.name:
		suffix = string(name[len(c.name):])
		belongs = suffix == "_sum" || suffix == "_count" || suffix == "_bucket" && c.typ == "histogram"
	}
	if !belongs {
		return p.start(name)
	}
	bound := "quantile"
	if c.typ == "histogram" {
		bound = "le"
	}
	switch {
	case c.typ == "histogram" && suffix == "_bucket", c.typ == "summary" && suffix == "":
		return p.checkBound(name, bound)
	case suffix == "_sum" || suffix == "_count":
		// Readers take the bound off every sample of the family; a sum or
		// count with one would lose it.
		for _, l := range p.labels {
			if string(l.name) == bound {
				return p.fail(ReasonMalformed, "sample %s has the label %s", quote(name), bound)
			}
		}
	}
	return nil
}

// checkBound requires the label le of a bucket or quantile of a summary
// sample, holding a number, and writes that number in its canonical form
// (boundText): "1" and "1.0" are one bucket.
func (p *parser) checkBound(name []byte, label string) error {
	for i, l := range p.labels {
		if string(l.name) == label {
			v, err := parseValue(l.value)
			if err != nil || math.IsNaN(v) {
				return p.fail(ReasonMalformed, "label %s of %s is not a number: %s", label, quote(name), quote(l.value))
			}
			p.labels[i].value = boundText(v)
			return nil
		}
	}
	return p.fail(ReasonMalformed, "sample %s lacks the label %s", quote(name), label)
}

// boundText writes an le or quantile value as OpenMetrics does, and as
// Prometheus 3 normalises them on scrape: the shortest form that reads
// back as v, with ".0" when that is a whole number ("1.0", "0.25", "+Inf").
// A scrape of the agent in OpenMetrics and one of the gateway in the text
// format then land on the same series.
func boundText(v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return []byte("+Inf")
	case math.IsInf(v, -1):
		return []byte("-Inf")
	}
	b := strconv.AppendFloat(nil, v, 'g', -1, 64)
	if !bytes.ContainsAny(b, ".e") {
		b = append(b, ".0"...)
	}
	return b
}

// render adds the gateway's labels to the current line's, checks the
// result and appends the rendered line.
func (p *parser) render(name []byte, value float64) error {
	p.final = append(p.final[:0], p.labels...)
	var present [len(addedLabelNames)]bool
	rewritten := false
	for i := range p.final {
		for a := range p.added {
			if string(p.final[i].name) != string(p.added[a].name) || len(p.added[a].value) == 0 {
				continue
			}
			if bytes.Equal(p.final[i].value, p.added[a].value) {
				present[a] = true
				continue
			}
			p.final[i].name = p.exportedName(p.final[i].name)
			rewritten = true
		}
	}
	for a := range p.added {
		if !present[a] && len(p.added[a].value) > 0 {
			p.final = append(p.final, rawLabel(p.added[a]))
		}
	}
	if len(p.final) > p.lim.MaxLabels {
		return p.fail(ReasonTooManyLabels, "series %s has %d labels with job, instance and project, more than %d", quote(name), len(p.final), p.lim.MaxLabels)
	}
	if rewritten {
		p.rewritten++
	}
	// The identity of a series: its name and labels sorted by name.
	p.key = append(p.key[:0], name...)
	p.key = append(p.key, '{')
	p.sorted = append(p.sorted[:0], p.final...)
	for i := 1; i < len(p.sorted); i++ {
		for j := i; j > 0 && bytes.Compare(p.sorted[j].name, p.sorted[j-1].name) < 0; j-- {
			p.sorted[j], p.sorted[j-1] = p.sorted[j-1], p.sorted[j]
		}
	}
	for _, l := range p.sorted {
		p.key = appendLabel(p.key, l)
	}
	if p.seenSeries() {
		return p.fail(ReasonDuplicateSeries, "series %s appears twice", quote(name))
	}

	p.buf = append(p.buf, name...)
	if len(p.final) > 0 {
		p.buf = append(p.buf, '{')
		for i, l := range p.final {
			if i > 0 {
				p.buf = append(p.buf, ',')
			}
			p.buf = appendLabel(p.buf, l)
		}
		p.buf = append(p.buf, '}')
	}
	p.buf = append(p.buf, ' ')
	p.buf = appendValue(p.buf, value)
	p.buf = append(p.buf, '\n')
	p.cur.series++
	return nil
}

// seenSeries reports whether p.key was seen before in this push, and
// remembers it. Keys sit in one arena, found by their hash; two different
// keys of one hash, which practically never happens, go to a map.
func (p *parser) seenSeries() bool {
	h := maphash.Bytes(p.seed, p.key)
	if end, ok := p.keyIndex[h]; ok {
		start := 0
		if end.prev >= 0 {
			start = p.keyEnds[end.prev]
		}
		if bytes.Equal(p.keyArena[start:p.keyEnds[end.prev+1]], p.key) {
			return true
		}
		if _, ok := p.collided[string(p.key)]; ok {
			return true
		}
		if p.collided == nil {
			p.collided = map[string]struct{}{}
		}
		p.collided[string(p.key)] = struct{}{}
		return false
	}
	p.keyIndex[h] = keyRef{prev: len(p.keyEnds) - 1}
	p.keyArena = append(p.keyArena, p.key...)
	p.keyEnds = append(p.keyEnds, len(p.keyArena))
	return false
}

// exportedName returns exported_<name>, prefixed again while that name is
// taken by another label of the line.
func (p *parser) exportedName(name []byte) []byte {
	n := append([]byte(exportedPrefix), name...)
	for {
		taken := false
		for _, l := range p.final {
			if bytes.Equal(l.name, n) {
				taken = true
				break
			}
		}
		if !taken {
			return n
		}
		n = append([]byte(exportedPrefix), n...)
	}
}

// snapshot packs the finished families into a Snapshot, the lines in one
// buffer of exactly their size.
func (p *parser) snapshot(meta Meta) *Snapshot {
	buf := p.buf
	if cap(buf)-len(buf) > len(buf)/16 {
		buf = slices.Clone(buf)
	}
	slices.SortFunc(p.fams, func(a, b parsedFamily) int { return strings.Compare(a.name, b.name) })
	s := &Snapshot{Meta: meta, Series: p.series, Rewritten: p.rewritten, families: make([]family, len(p.fams))}
	for i, f := range p.fams {
		s.families[i] = family{name: f.name, help: f.help, hasHelp: f.hasHelp, typ: f.typ, series: f.series, lines: buf[f.start:f.end:f.end]}
	}
	return s
}

func appendLabel(b []byte, l rawLabel) []byte {
	b = append(b, l.name...)
	b = append(b, '=', '"')
	b = append(b, l.value...)
	return append(b, '"')
}

// appendValue writes v as the text format does: NaN, +Inf, -Inf or the
// shortest decimal that reads back as v.
func appendValue(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

func appendEscapedLabelValue(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '"':
			b = append(b, '\\', '"')
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return b
}

var errFloatSyntax = errors.New("not a number")

// parseValue reads a sample value: a Go float without hexadecimal or
// underscores, or NaN, +Inf, -Inf in any case.
func parseValue(b []byte) (float64, error) {
	if bytes.ContainsAny(b, "pPxX_") {
		return 0, errFloatSyntax
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, errFloatSyntax
	}
	return v, nil
}

func validMetricName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func isLabelNameByte(c byte, first bool) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || !first && c >= '0' && c <= '9'
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

func trimBlankLeft(b []byte) []byte {
	for len(b) > 0 && isBlank(b[0]) {
		b = b[1:]
	}
	return b
}

// token splits b at its first blank.
func token(b []byte) (tok, rest []byte) {
	i := 0
	for i < len(b) && !isBlank(b[i]) {
		i++
	}
	return b[:i], b[i:]
}

// quote quotes a pushed text for an error message, cut to quoteMax bytes.
func quote(b []byte) string {
	if len(b) > quoteMax {
		return strconv.Quote(string(b[:quoteMax])) + "…"
	}
	return strconv.Quote(string(b))
}
