package protocol

import (
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// Reason says why a datagram was rejected. The set is fixed so that it can be
// a metric label.
type Reason string

// Rejection reasons.
const (
	ReasonJSON      Reason = "json"       // not a JSON object
	ReasonVersion   Reason = "version"    // "v" missing or not one of MinVersion..Version
	ReasonType      Reason = "type"       // "type" missing or not start/progress/end
	ReasonMissing   Reason = "missing"    // a required field is absent
	ReasonFieldType Reason = "field_type" // a field has the wrong JSON type
	ReasonRange     Reason = "range"      // a number out of range, a string too long or with bad characters
	ReasonTooMany   Reason = "too_many"   // a list longer than its limit
	ReasonTooLarge  Reason = "too_large"  // datagram larger than MaxDatagramSize
)

// Reasons lists every Reason, for initialising counters.
var Reasons = []Reason{ReasonJSON, ReasonVersion, ReasonType, ReasonMissing, ReasonFieldType, ReasonRange, ReasonTooMany, ReasonTooLarge}

// DecodeError describes a rejected datagram.
type DecodeError struct {
	Reason Reason
	Type   Type   // the message type when it could be read
	Field  string // the offending field, "" when not about one
	Detail string
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("invalid %s message (%s): %s", e.Type, e.Reason, e.Detail)
	}
	return fmt.Sprintf("invalid %s message (%s): field %q: %s", e.Type, e.Reason, e.Field, e.Detail)
}

// Decoder decodes datagrams. It keeps a parser whose memory is reused from
// one call to the next; it is not safe for concurrent use, so each reader
// goroutine owns one.
type Decoder struct {
	p             fastjson.Parser
	interned      map[string]string
	internedBytes int
}

// Bounds of the strings a Decoder keeps for reuse: when either is reached
// the set starts afresh, so a stream of unique texts costs at most this.
const (
	maxInterned      = 8192
	maxInternedBytes = 4 << 20
)

// intern returns b as a string, reusing an earlier identical string:
// function names, SQL texts and endpoints repeat from request to request,
// and reusing them saves most of a message's allocations.
func (d *Decoder) intern(b []byte) string {
	if s, ok := d.interned[string(b)]; ok {
		return s
	}
	if d.interned == nil || len(d.interned) >= maxInterned || d.internedBytes+len(b) > maxInternedBytes {
		d.interned = make(map[string]string, 1024)
		d.internedBytes = 0
	}
	s := string(b)
	d.interned[s] = s
	d.internedBytes += len(s)
	return s
}

// Decode parses b into m, reusing m's slices. On error m holds a partial
// message and must not be used; the error is a *DecodeError.
func (d *Decoder) Decode(b []byte, m *Message) error {
	m.reset()
	if len(b) > MaxDatagramSize {
		return &DecodeError{Reason: ReasonTooLarge, Detail: fmt.Sprintf("%d bytes, limit %d", len(b), MaxDatagramSize)}
	}
	v, err := d.p.ParseBytes(b)
	if err != nil {
		return &DecodeError{Reason: ReasonJSON, Detail: truncateDetail(err.Error())}
	}
	if v.Type() != fastjson.TypeObject {
		return &DecodeError{Reason: ReasonJSON, Detail: "not a JSON object"}
	}
	r := reader{v: v, d: d}
	version := v.Get("v")
	if version == nil {
		return &DecodeError{Reason: ReasonVersion, Field: "v", Detail: "missing"}
	}
	n, err := version.Int()
	if err != nil || n < MinVersion || n > Version {
		return &DecodeError{Reason: ReasonVersion, Field: "v", Detail: fmt.Sprintf("got %s; want %d to %d", truncateDetail(version.String()), MinVersion, Version)}
	}
	r.micros = n >= 2
	switch t := string(v.GetStringBytes("type")); t {
	case "start":
		m.Type = TypeStart
	case "progress":
		m.Type = TypeProgress
	case "end":
		m.Type = TypeEnd
	default:
		if v.Get("type") == nil {
			return &DecodeError{Reason: ReasonType, Field: "type", Detail: "missing"}
		}
		return &DecodeError{Reason: ReasonType, Field: "type", Detail: fmt.Sprintf("got %s; want start, progress or end", truncateDetail(v.Get("type").String()))}
	}
	r.t = m.Type

	m.ID = r.ident("id", MaxIDLen, true, false)
	m.PID = int(r.int("pid", 1, MaxPID, true))
	m.Project = r.ident("project", MaxProjectLen, true, true)
	m.TS = r.seconds("ts", MinTimestamp, MaxTimestamp, true)
	m.Host = r.istr(v, "host", MaxHostLen, false)
	m.Pool = r.istr(v, "pool", MaxPoolLen, false)
	m.SAPI = r.istr(v, "sapi", MaxSAPILen, false)
	m.Dropped = r.int("dropped", 0, MaxCount, false)
	m.Endpoint = r.istr(v, "endpoint", MaxEndpointLen, m.Type == TypeEnd)

	switch m.Type {
	case TypeStart:
		r.requestFields(m)
	case TypeProgress:
		m.Elapsed = r.seconds("elapsed", 0, MaxDurationSec, true)
		m.Memory = r.int("mem", 0, MaxMemoryBytes, false)
		m.CPU = r.seconds("cpu", 0, MaxDurationSec, false)
		m.Sequence = r.int("seq", 0, MaxSequence, false)
		m.Stack = r.strings("stack", MaxStackFrames, MaxFunctionLen, m.Stack)
	case TypeEnd:
		r.requestFields(m)
		r.endFields(m)
	}
	if r.err != nil {
		return r.err
	}
	return nil
}

// requestFields reads what start and end share.
func (r *reader) requestFields(m *Message) {
	m.CID = r.str(r.v, "cid", MaxCIDLen, false)
	m.Method = r.istr(r.v, "method", MaxMethodLen, true)
	m.URI = r.str(r.v, "uri", MaxURILen, false)
	m.Started = r.seconds("started", MinTimestamp, MaxTimestamp, true)
	m.TraceID = r.traceID("trace_id")
}

// traceID reads an optional W3C trace id: exactly 32 lowercase hex
// characters, as the traceparent header carries it. It becomes a Loki
// structured-metadata value, so anything else is rejected, not passed on.
func (r *reader) traceID(field string) string {
	b, ok := r.text(r.v, field, TraceIDLen, false)
	if !ok {
		return ""
	}
	if len(b) != TraceIDLen {
		r.fail(ReasonRange, field, fmt.Sprintf("%d characters; want %d", len(b), TraceIDLen))
		return ""
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			r.fail(ReasonRange, field, fmt.Sprintf("character %q not lowercase hex", c))
			return ""
		}
	}
	return string(b)
}

// sites reads the call-site table into m.Sites, reusing the frame slices of
// an earlier message: frames repeat from request to request, so they are
// interned too.
func (r *reader) sites(m *Message) {
	for i, x := range r.array("sites", MaxSites) {
		// Field names are formatted only on failure: the table is on every
		// end message's path.
		if x.Type() != fastjson.TypeArray {
			r.wrongType(fmt.Sprintf("sites[%d]", i), x, "array")
			return
		}
		a, _ := x.Array()
		if len(a) == 0 {
			r.fail(ReasonRange, fmt.Sprintf("sites[%d]", i), "no frames")
			return
		}
		if len(a) > MaxSiteFrames {
			r.fail(ReasonTooMany, fmt.Sprintf("sites[%d]", i), fmt.Sprintf("%d frames, limit %d", len(a), MaxSiteFrames))
			return
		}
		var frames []string
		if len(m.Sites) < cap(m.Sites) {
			frames = m.Sites[:len(m.Sites)+1][len(m.Sites)][:0]
		}
		for j, f := range a {
			if f.Type() != fastjson.TypeString {
				r.wrongType(fmt.Sprintf("sites[%d][%d]", i, j), f, "string")
				return
			}
			b, _ := f.StringBytes()
			if len(b) == 0 {
				r.fail(ReasonRange, "", "empty frame")
			}
			if r.err != nil || !r.checkText("", b, MaxSiteFrameLen) {
				r.err.Field = fmt.Sprintf("sites[%d][%d]", i, j)
				return
			}
			frames = append(frames, r.d.intern(b))
		}
		m.Sites = append(m.Sites, frames)
	}
}

func (r *reader) endFields(m *Message) {
	v := r.v
	m.Status = int(r.int("status", 0, MaxStatus, false))
	if v.Get("exit") != nil {
		m.Exit = int(r.int("exit", MinExitCode, MaxExitCode, true))
		m.HasExit = true
	}
	m.Wall = r.seconds("wall", 0, MaxDurationSec, true)
	m.CPUUser = r.seconds("cpu_user", 0, MaxDurationSec, false)
	m.CPUSys = r.seconds("cpu_sys", 0, MaxDurationSec, false)
	m.MemPeak = r.int("mem_peak", 0, MaxMemoryBytes, false)
	m.SQLDropped = r.int("sql_dropped", 0, MaxCount, false)
	m.Profiler = r.istr(v, "profiler", MaxProfilerLen, false)
	m.Period = r.seconds("period", 0, MaxPeriodSec, false)
	m.ErrorsDropped = r.int("errors_dropped", 0, MaxCount, false)
	m.Fatal = r.bool("fatal")
	m.Forced = r.bool("forced")
	m.Truncated = r.strings("truncated", MaxTruncated, MaxTruncatedLen, m.Truncated)
	r.sites(m) // before sql, whose site indexes it

	for i, e := range r.array("sql", MaxSQL) {
		o := r.object(e, "sql", i)
		if o == nil {
			break
		}
		s := SQL{Rows: -1, Site: -1}
		s.Query = r.istr(o, "q", MaxSQLTextLen, true)
		s.Duration = r.secondsIn(o, "d", 0, MaxDurationSec, true)
		if o.Get("rows") != nil {
			s.Rows = r.intIn(o, "rows", -1, MaxRows, true)
		}
		s.Error = r.boolIn(o, "err")
		s.Cut = r.boolIn(o, "trunc")
		if x := o.Get("site"); x != nil && x.Type() != fastjson.TypeNull {
			s.Site = int(r.intIn(o, "site", 0, int64(len(m.Sites))-1, true))
		}
		if r.err != nil {
			r.err.Field = fmt.Sprintf("sql[%d].%s", i, r.err.Field)
			return
		}
		m.SQL = append(m.SQL, s)
	}
	for i, e := range r.array("fn", MaxFunctions) {
		o := r.object(e, "fn", i)
		if o == nil {
			break
		}
		f := Function{
			Name:      r.istr(o, "n", MaxFunctionLen, true),
			Self:      r.secondsIn(o, "self", 0, MaxDurationSec, true),
			Inclusive: r.secondsIn(o, "incl", 0, MaxDurationSec, true),
			Calls:     r.intIn(o, "calls", 0, MaxCount, false),
		}
		if r.err == nil && f.Name == "" {
			r.fail(ReasonRange, "n", "empty function name")
		}
		if r.err == nil && f.Self > f.Inclusive+1e-9 {
			r.fail(ReasonRange, "self", fmt.Sprintf("self %g s larger than inclusive %g s", f.Self, f.Inclusive))
		}
		if r.err != nil {
			r.err.Field = fmt.Sprintf("fn[%d].%s", i, r.err.Field)
			return
		}
		m.Functions = append(m.Functions, f)
	}
	for i, e := range r.array("wall_fn", MaxWall) {
		o := r.object(e, "wall_fn", i)
		if o == nil {
			break
		}
		w := WallEntry{
			Function: r.istr(o, "n", MaxFunctionLen, true),
			Caller:   r.istr(o, "c", MaxFunctionLen, false),
			Seconds:  r.secondsIn(o, "s", 0, MaxDurationSec, true),
		}
		if r.err == nil && w.Function == "" {
			r.fail(ReasonRange, "n", "empty function name")
		}
		if r.err != nil {
			r.err.Field = fmt.Sprintf("wall_fn[%d].%s", i, r.err.Field)
			return
		}
		m.WallFunctions = append(m.WallFunctions, w)
	}
	for i, e := range r.array("stacks", MaxStacks) {
		o := r.object(e, "stacks", i)
		if o == nil {
			break
		}
		s := Stack{
			Frames:  r.str(o, "s", MaxCollapsedLen, true),
			Samples: r.intIn(o, "n", 1, MaxCount, true),
		}
		if r.err != nil {
			r.err.Field = fmt.Sprintf("stacks[%d].%s", i, r.err.Field)
			return
		}
		m.Stacks = append(m.Stacks, s)
	}
	for i, e := range r.array("errors", MaxErrors) {
		o := r.object(e, "errors", i)
		if o == nil {
			break
		}
		x := Error{
			Type:    r.istr(o, "type", MaxErrorTypeLen, true),
			Message: r.str(o, "msg", MaxErrorMsgLen, false),
			File:    r.str(o, "file", MaxErrorFileLen, false),
			Line:    r.intIn(o, "line", 0, MaxLine, false),
		}
		if r.err != nil {
			r.err.Field = fmt.Sprintf("errors[%d].%s", i, r.err.Field)
			return
		}
		m.Errors = append(m.Errors, x)
	}
}

// reader reads typed fields of one message and remembers the first error,
// so that the decoding code above reads as a list of fields.
type reader struct {
	v      *fastjson.Value
	d      *Decoder
	t      Type
	micros bool // version 2: durations and times in integer microseconds
	err    *DecodeError
}

func (r *reader) fail(reason Reason, field, detail string) {
	if r.err == nil {
		r.err = &DecodeError{Reason: reason, Type: r.t, Field: field, Detail: detail}
	}
}

func (r *reader) missing(field string) { r.fail(ReasonMissing, field, "required") }

func (r *reader) wrongType(field string, got *fastjson.Value, want string) {
	r.fail(ReasonFieldType, field, fmt.Sprintf("got %s; want %s", got.Type(), want))
}

// text reads the bytes of an optional or required string field of at most
// max bytes that passes checkText. ok is false when the field is absent or
// invalid (the error, if any, is recorded).
func (r *reader) text(o *fastjson.Value, field string, max int, required bool) (b []byte, ok bool) {
	if r.err != nil {
		return nil, false
	}
	x := o.Get(field)
	if x == nil || x.Type() == fastjson.TypeNull {
		if required {
			r.missing(field)
		}
		return nil, false
	}
	if x.Type() != fastjson.TypeString {
		r.wrongType(field, x, "string")
		return nil, false
	}
	b, _ = x.StringBytes()
	return b, r.checkText(field, b, max)
}

// str reads a string field into a new string.
func (r *reader) str(o *fastjson.Value, field string, max int, required bool) string {
	b, ok := r.text(o, field, max, required)
	if !ok {
		return ""
	}
	return string(b)
}

// istr is str for values that repeat across messages: it interns them.
func (r *reader) istr(o *fastjson.Value, field string, max int, required bool) string {
	b, ok := r.text(o, field, max, required)
	if !ok {
		return ""
	}
	return r.d.intern(b)
}

// checkText accepts at most max bytes of valid UTF-8 without control
// characters other than tab, CR and LF: these strings end up in labels,
// logs and Loki lines.
func (r *reader) checkText(field string, b []byte, max int) bool {
	if len(b) > max {
		r.fail(ReasonRange, field, fmt.Sprintf("%d bytes, limit %d", len(b), max))
		return false
	}
	if !utf8.Valid(b) {
		r.fail(ReasonRange, field, "not valid UTF-8")
		return false
	}
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			r.fail(ReasonRange, field, fmt.Sprintf("control character 0x%02x", c))
			return false
		}
	}
	return true
}

// ident reads a string of 1..max bytes from [A-Za-z0-9._-].
func (r *reader) ident(field string, max int, required, intern bool) string {
	var s string
	if intern {
		s = r.istr(r.v, field, max, required)
	} else {
		s = r.str(r.v, field, max, required)
	}
	if r.err != nil {
		return ""
	}
	if s == "" {
		if required {
			r.fail(ReasonRange, field, "empty")
		}
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			r.fail(ReasonRange, field, fmt.Sprintf("character %q not in [A-Za-z0-9._-]", c))
			return ""
		}
	}
	return s
}

func (r *reader) number(o *fastjson.Value, field string, required bool) (*fastjson.Value, bool) {
	if r.err != nil {
		return nil, false
	}
	x := o.Get(field)
	if x == nil || x.Type() == fastjson.TypeNull {
		if required {
			r.missing(field)
		}
		return nil, false
	}
	if x.Type() != fastjson.TypeNumber {
		r.wrongType(field, x, "number")
		return nil, false
	}
	return x, true
}

// secondsIn reads a duration or a time in seconds: a JSON number in version
// 1, an integer of microseconds in version 2. min and max are in seconds.
func (r *reader) secondsIn(o *fastjson.Value, field string, min, max float64, required bool) float64 {
	x, ok := r.number(o, field, required)
	if !ok {
		return 0
	}
	var f float64
	if r.micros {
		// An integer; a 32-bit PHP writes large ones as integral floats
		// (1.764294512168011e+15, 48010.0).
		us, err := x.Int64()
		if err != nil {
			g, ferr := x.Float64()
			if ferr != nil || g != math.Trunc(g) || math.IsInf(g, 0) || math.Abs(g) > 1<<53 {
				r.fail(ReasonRange, field, fmt.Sprintf("%s is not an integer of microseconds", truncateDetail(x.String())))
				return 0
			}
			us = int64(g)
		}
		// Both exact below 2⁵³ µs and divided once, so correctly rounded:
		// the same float64 as version 1's decimal seconds.
		f = float64(us) / 1e6
	} else {
		var err error
		f, err = x.Float64()
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			r.fail(ReasonRange, field, "not a finite number")
			return 0
		}
	}
	if f < min || f > max {
		r.fail(ReasonRange, field, fmt.Sprintf("%g outside [%g, %g]", f, min, max))
		return 0
	}
	return f
}

func (r *reader) seconds(field string, min, max float64, required bool) float64 {
	return r.secondsIn(r.v, field, min, max, required)
}

func (r *reader) intIn(o *fastjson.Value, field string, min, max int64, required bool) int64 {
	x, ok := r.number(o, field, required)
	if !ok {
		return 0
	}
	n, err := x.Int64()
	if err != nil {
		// Int64 refuses fractions and numbers beyond int64: both are range errors here.
		r.fail(ReasonRange, field, fmt.Sprintf("%s is not an integer in [%d, %d]", truncateDetail(x.String()), min, max))
		return 0
	}
	if n < min || n > max {
		r.fail(ReasonRange, field, fmt.Sprintf("%d outside [%d, %d]", n, min, max))
		return 0
	}
	return n
}

func (r *reader) int(field string, min, max int64, required bool) int64 {
	return r.intIn(r.v, field, min, max, required)
}

func (r *reader) boolIn(o *fastjson.Value, field string) bool {
	if r.err != nil {
		return false
	}
	x := o.Get(field)
	if x == nil || x.Type() == fastjson.TypeNull {
		return false
	}
	switch x.Type() {
	case fastjson.TypeTrue:
		return true
	case fastjson.TypeFalse:
		return false
	}
	r.wrongType(field, x, "true or false")
	return false
}

func (r *reader) bool(field string) bool { return r.boolIn(r.v, field) }

// array returns the elements of an optional array of at most max elements.
func (r *reader) array(field string, max int) []*fastjson.Value {
	if r.err != nil {
		return nil
	}
	x := r.v.Get(field)
	if x == nil || x.Type() == fastjson.TypeNull {
		return nil
	}
	if x.Type() != fastjson.TypeArray {
		r.wrongType(field, x, "array")
		return nil
	}
	a, _ := x.Array()
	if len(a) > max {
		r.fail(ReasonTooMany, field, fmt.Sprintf("%d elements, limit %d", len(a), max))
		return nil
	}
	return a
}

func (r *reader) object(x *fastjson.Value, field string, i int) *fastjson.Value {
	if r.err != nil {
		return nil
	}
	if x.Type() != fastjson.TypeObject {
		r.fail(ReasonFieldType, fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("got %s; want object", x.Type()))
		return nil
	}
	return x
}

// strings reads an optional array of strings into dst.
func (r *reader) strings(field string, max, maxLen int, dst []string) []string {
	for i, x := range r.array(field, max) {
		if x.Type() != fastjson.TypeString {
			r.fail(ReasonFieldType, fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("got %s; want string", x.Type()))
			return dst
		}
		b, _ := x.StringBytes()
		if !r.checkText(fmt.Sprintf("%s[%d]", field, i), b, maxLen) {
			return dst
		}
		dst = append(dst, string(b))
	}
	return dst
}

// truncateDetail keeps error details short: they end up in logs.
func truncateDetail(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	for i := max; i > max-4 && i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return s[:max] + "…"
}
