package rawtrace

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
)

// GELF sends events to a Graylog GELF input (GELF 1.1), one message an
// event, over UDP, TCP or HTTP(S) as the URL's scheme says. Its methods
// may be called concurrently; concurrent Sends take turns on the one
// connection.
type GELF struct {
	job, host string

	mu        sync.Mutex // serialises Send and Close on transport
	transport gelfTransport
}

// gelfTransport carries one encoded GELF message. send returns
// errOversized when the message cannot be carried at all, a
// *PermanentError when the receiver refused it, and any other error when
// a later attempt may succeed.
type gelfTransport interface {
	send(ctx context.Context, msg []byte) error
	close() error
}

// errOversized is a message even a UDP GELF input cannot reassemble.
var errOversized = fmt.Errorf("message larger than %d GELF chunks", gelfMaxChunks)

// NewGELF builds the GELF sink of cfg.GELFURL: udp://host:port,
// tcp://host:port or http(s)://host:port/gelf.
func NewGELF(cfg Config, o SinkOptions) (*GELF, error) {
	u, err := parseSinkURL(cfg.GELFURL, "udp", "tcp", "http", "https")
	if err != nil {
		return nil, fmt.Errorf("cannot build the GELF sink: %w", err)
	}
	g := &GELF{job: o.Job, host: o.Instance}
	if (u.Scheme == "udp" || u.Scheme == "tcp") && u.Port() == "" {
		return nil, fmt.Errorf("cannot build the GELF sink: URL %q has no port (Graylog's GELF inputs listen on 12201 by default)", u.Redacted())
	}
	switch u.Scheme {
	case "udp":
		g.transport = newGELFUDP(u.Host)
	case "tcp":
		g.transport = newGELFTCP(u.Host)
	default: // http, https
		h := map[string][]string{"User-Agent": {"bitville-apm/" + o.Version}}
		p, err := newHTTPPoster(cfg.GELFURL, cfg.GELFTLS, h)
		if err != nil {
			return nil, fmt.Errorf("cannot build the GELF sink: %w", err)
		}
		g.transport = gelfHTTP{p}
	}
	return g, nil
}

// Name is the sink label of the self-metrics.
func (g *GELF) Name() string { return "gelf" }

// Send sends each event of batch as one message. An event too large for
// UDP is sent again without full_message. A failure worth retrying stops
// the batch: the pipeline sends it all again, so the events before it
// arrive twice.
func (g *GELF) Send(ctx context.Context, batch []Event) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var oversized, refused int
	var lastRefusal error
	for _, e := range batch {
		host, job := origin(e, g.host, g.job)
		err := g.transport.send(ctx, encodeGELF(e, host, job, true))
		if errors.Is(err, errOversized) {
			err = g.transport.send(ctx, encodeGELF(e, host, job, false))
		}
		var perm *PermanentError
		switch {
		case err == nil:
		case errors.Is(err, errOversized):
			oversized++
		case errors.As(err, &perm):
			refused++
			lastRefusal = err
		default:
			return fmt.Errorf("cannot send to GELF: %w", err)
		}
	}
	switch n := oversized + refused; {
	case n == 0:
		return nil
	case n == len(batch) && oversized == 0:
		return &PermanentError{Err: fmt.Errorf("GELF input refused all %d events: %w", refused, lastRefusal)}
	}
	if lastRefusal == nil {
		lastRefusal = errOversized
	}
	return &PartialError{TooLarge: oversized, Rejected: refused, Err: lastRefusal}
}

// Close closes the connection.
func (g *GELF) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.transport.close()
}

// gelfLevel is the syslog severity GELF takes for a level.
func gelfLevel(level string) int {
	switch level {
	case LevelError:
		return 3
	case LevelWarning:
		return 4
	}
	return 6
}

// encodeGELF writes e as a GELF 1.1 message: the standard fields, the
// sink's and the event's own additional fields, then every scalar
// top-level field of the line as _<name> in name order. Fields named like
// an earlier one are left out, since GELF has no repeated fields, and so
// are those of graylogOwnFields.
func encodeGELF(e Event, host, job string, full bool) []byte {
	b := make([]byte, 0, 256+len(e.Line)*2)
	b = append(b, `{"version":"1.1","host":`...)
	b = appendJSONString(b, host)
	b = append(b, `,"short_message":`...)
	short := e.Summary
	if short == "" { // GELF requires a non-empty short_message
		short = e.Kind + " event"
	}
	b = appendJSONString(b, short)
	if full {
		b = append(b, `,"full_message":`...)
		b = appendJSONString(b, string(e.Line))
	}
	t := entryTime(e)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, t.Unix(), 10)
	b = append(b, '.')
	us := strconv.Itoa(t.Nanosecond() / 1000)
	b = append(b, "000000"[len(us):]...)
	b = append(b, us...)
	b = append(b, `,"level":`...)
	b = strconv.AppendInt(b, int64(gelfLevel(e.Level)), 10)

	seen := graylogOwnFields()
	add := func(name string, raw []byte) {
		seen[name] = true
		b = append(b, `,"_`...)
		b = append(b, name...)
		b = append(b, `":`...)
		b = append(b, raw...)
	}
	for _, f := range [...]struct{ name, value string }{
		{"job", job}, {"kind", e.Kind}, {"project", e.Project},
		{"correlation_id", e.IDs.CorrelationID}, {"trace_id", e.IDs.TraceID},
		{"request_id", e.IDs.RequestID}, {"query_fp", e.IDs.QueryFP},
	} {
		if f.value != "" {
			add(f.name, appendJSONString(nil, f.value))
		}
	}
	for _, f := range scalarFields(e.Line) {
		if !seen[f.name] {
			add(f.name, f.raw)
		}
	}
	return append(b, '}')
}

// graylogOwnFields are the names Graylog stores its own fields under once
// it strips an additional field's underscore: _id is refused, and a
// line's level ("error") would replace GELF's numeric level. The line
// keeps them all in full_message.
func graylogOwnFields() map[string]bool {
	return map[string]bool{"id": true, "message": true, "full_message": true, "source": true,
		"timestamp": true, "level": true, "facility": true, "file": true, "line": true}
}

// lineField is one scalar top-level field of an event line, its value as
// the JSON text it has in the line.
type lineField struct {
	name string
	raw  json.RawMessage
}

// scalarFields returns the string, number and boolean top-level fields of
// line whose names GELF allows, sorted by name. Objects, arrays and nulls
// are left out: they are in full_message. A line that is not a JSON
// object has none.
func scalarFields(line []byte) []lineField {
	var m map[string]json.RawMessage
	if json.Unmarshal(line, &m) != nil {
		return nil
	}
	fields := make([]lineField, 0, len(m))
	for name, raw := range m {
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || raw[0] == '{' || raw[0] == '[' || raw[0] == 'n' || !gelfFieldName(name) {
			continue
		}
		fields = append(fields, lineField{name, raw})
	}
	slices.SortFunc(fields, func(a, b lineField) int { return cmp.Compare(a.name, b.name) })
	return fields
}

// gelfFieldName reports whether name fits GELF's additional field names,
// ^[\w\.\-]*$ (ASCII letters, digits, underscore, dot, dash), once
// prefixed with the underscore.
func gelfFieldName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
