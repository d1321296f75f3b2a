package pushgw

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fastjson"

	"github.com/bitville/bitville-apm/internal/push"
	"github.com/bitville/bitville-apm/internal/rawtrace"
)

// Bounds of one event's fields besides its line (whose bound is the
// sinks' events.max-line-bytes).
const (
	maxSummaryBytes = 4096
	maxIDBytes      = 256
)

// eventKind is what an event's kind may be: it becomes a Loki label.
var eventKind = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// pushedEvent is one line of an events push: a rawtrace.Event as the
// pushing daemon's pipeline has it. Unknown fields are refused.
type pushedEvent struct {
	Kind     string            `json:"kind"`
	Level    string            `json:"level"`
	Priority rawtrace.Priority `json:"prio"`
	Project  string            `json:"project"`
	Time     json.RawMessage   `json:"time"`
	Summary  string            `json:"summary"`
	IDs      rawtrace.IDs      `json:"ids"`
	Line     json.RawMessage   `json:"line"`
	Job      string            `json:"job"`
	Instance string            `json:"instance"`
}

// handleEvents takes one batch of raw-trace events: all checked, then all
// handed to the sinks under the authenticated project, or none.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, project string) error {
	if s.events == nil || !s.events.Enabled() {
		return reject(http.StatusUnprocessableEntity, ReasonNoEventSink, "this gateway forwards no events: it has neither --loki.url nor --gelf.url")
	}
	job, instance, err := origin(r)
	if err != nil {
		return err
	}
	batch := strings.ToLower(r.Header.Get(push.HeaderBatch))
	if b, err := hex.DecodeString(batch); err != nil || len(b) != 32 {
		return reject(http.StatusBadRequest, ReasonBadHeader, "%s %q: want the hex SHA-256 of the body", push.HeaderBatch, batch)
	}
	if err := checkContentType(r, push.EventsContentType, "application/json"); err != nil {
		return err
	}
	body, err := readBody(w, r, int64(s.cfg.MaxBodyBytes), int64(s.cfg.MaxDecodedBytes))
	if err != nil {
		return err
	}
	if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != batch {
		return reject(http.StatusBadRequest, ReasonBadHeader, "%s %s is not the SHA-256 of the body", push.HeaderBatch, batch)
	}
	now := s.now()
	events, rewritten, err := s.decodeEvents(body, project, job, instance)
	if err != nil {
		return err
	}
	duplicate := func() error {
		s.m.pushes.WithLabelValues(project, kindEvents, "duplicate").Inc()
		answer(w, map[string]any{"status": "duplicate", "events": len(events)})
		return nil
	}
	// A retry is answered before the rate limit, which it should not wait
	// on; remember decides again, atomically, for two copies in flight.
	if s.batches.seen(project, batch, now) {
		return duplicate()
	}
	if ok, wait := s.eventLim.take(project, len(events), now); !ok {
		setRetryAfter(w, wait)
		return reject(http.StatusTooManyRequests, ReasonRateLimited, "project %s is over its %g events/s (pushgw.events-rate); %d events wait", project, s.cfg.EventsRate, len(events))
	}
	if !s.batches.remember(project, batch, now) {
		return duplicate()
	}
	for _, e := range events {
		s.events.Emit(e)
	}
	s.m.pushes.WithLabelValues(project, kindEvents, "accepted").Inc()
	s.m.events.WithLabelValues(project).Add(float64(len(events)))
	if rewritten > 0 {
		s.m.rewritten.WithLabelValues(project, kindEvents).Add(float64(rewritten))
	}
	answer(w, map[string]any{"status": "accepted", "events": len(events)})
	return nil
}

// decodeEvents reads and checks every line of body; the first bad one
// refuses the push.
func (s *Server) decodeEvents(body []byte, project, job, instance string) ([]rawtrace.Event, int, error) {
	var events []rawtrace.Event
	rewritten := 0
	lineNo := 0
	for len(body) > 0 {
		var line []byte
		line, body, _ = bytes.Cut(body, []byte{'\n'})
		lineNo++
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if len(events) >= s.cfg.EventsBurst {
			return nil, 0, reject(http.StatusRequestEntityTooLarge, ReasonTooManyEvents, "the push has more than %d events (pushgw.events-burst)", s.cfg.EventsBurst)
		}
		e, claimed, err := s.decodeEvent(line, project, job, instance)
		if err != nil {
			return nil, 0, reject(http.StatusBadRequest, ReasonInvalidEvent, "event on line %d: %v", lineNo, err)
		}
		if claimed {
			rewritten++
		}
		events = append(events, e)
	}
	if len(events) == 0 {
		return nil, 0, reject(http.StatusBadRequest, ReasonMalformed, "the push holds no event")
	}
	return events, rewritten, nil
}

// decodeEvent checks one event and puts it under the push's project, job
// and instance. claimed says the event named another project, which its
// line keeps as exported_project.
func (s *Server) decodeEvent(line []byte, project, job, instance string) (rawtrace.Event, bool, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var p pushedEvent
	if err := dec.Decode(&p); err != nil {
		return rawtrace.Event{}, false, err
	}
	if dec.More() {
		return rawtrace.Event{}, false, errString("more than one JSON value on the line")
	}
	e := rawtrace.Event{Kind: p.Kind, Level: p.Level, Priority: p.Priority, Summary: p.Summary, IDs: p.IDs,
		Project: project, Job: job, Instance: instance}
	switch {
	case !eventKind.MatchString(p.Kind):
		return e, false, errString("kind " + quoteField(p.Kind) + ": want 1 to 32 of a-z, 0-9, _")
	case p.Level != rawtrace.LevelError && p.Level != rawtrace.LevelWarning && p.Level != rawtrace.LevelInfo:
		return e, false, errString("level " + quoteField(p.Level) + ": want error, warning or info")
	case p.Priority > rawtrace.PrioritySampled:
		return e, false, errString("prio: want 0 (error), 1 (slow) or 2 (sampled)")
	case len(p.Summary) > maxSummaryBytes:
		return e, false, errString("summary over 4096 bytes")
	case len(p.IDs.CorrelationID) > maxIDBytes || len(p.IDs.TraceID) > maxIDBytes || len(p.IDs.RequestID) > maxIDBytes || len(p.IDs.QueryFP) > maxIDBytes:
		return e, false, errString("an id over 256 bytes")
	}
	if len(p.Time) > 0 && string(p.Time) != "null" {
		if err := json.Unmarshal(p.Time, &e.Time); err != nil {
			return e, false, errString("time: want RFC 3339")
		}
		if e.Time.After(s.now().Add(s.cfg.MaxClockSkew)) {
			return e, false, errString("time " + e.Time.String() + " is in the future (pushgw.max-clock-skew)")
		}
	}
	v, err := fastjson.ParseBytes(p.Line)
	if err != nil || v.Type() != fastjson.TypeObject {
		return e, false, errString("line: want one JSON object")
	}
	claimed := false
	if lp := v.Get("project"); lp != nil && lp.Type() == fastjson.TypeString && string(lp.GetStringBytes()) != project {
		claimed = true
		o := v.GetObject()
		o.Set("exported_project", fastjson.MustParse(strconvQuote(string(lp.GetStringBytes()))))
		o.Set("project", fastjson.MustParse(strconvQuote(project)))
		e.Line = o.MarshalTo(nil)
	} else {
		e.Line = append(json.RawMessage(nil), p.Line...)
	}
	if p.Project != "" && p.Project != project {
		claimed = true
	}
	return e, claimed, nil
}

type errString string

func (e errString) Error() string { return string(e) }

func quoteField(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconvQuote(s)
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// recentBatches remembers the batch ids of the events pushes of the last
// hour, per project, so that a push retried after its answer was lost is
// not forwarded twice. At most maxRecentBatches a project are kept.
type recentBatches struct {
	mu        sync.Mutex
	byProject map[string]*batchRing
}

const (
	maxRecentBatches = 4096
	recentBatchesFor = time.Hour
)

type batchRing struct {
	ids  map[string]time.Time
	ring []string
	next int
}

func newRecentBatches() *recentBatches {
	return &recentBatches{byProject: map[string]*batchRing{}}
}

func (r *recentBatches) seen(project, id string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seenLocked(project, id, now)
}

func (r *recentBatches) seenLocked(project, id string, now time.Time) bool {
	b := r.byProject[project]
	if b == nil {
		return false
	}
	at, ok := b.ids[id]
	return ok && now.Sub(at) < recentBatchesFor
}

// remember records id as a batch of project taken at now, and reports
// false, changing nothing, when it is a recent one already.
func (r *recentBatches) remember(project, id string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seenLocked(project, id, now) {
		return false
	}
	b := r.byProject[project]
	if b == nil {
		b = &batchRing{ids: map[string]time.Time{}, ring: make([]string, 0, 64)}
		r.byProject[project] = b
	}
	if _, ok := b.ids[id]; ok { // seen more than recentBatchesFor ago
		b.ids[id] = now
		return true
	}
	if len(b.ring) < maxRecentBatches {
		b.ring = append(b.ring, id)
	} else {
		delete(b.ids, b.ring[b.next])
		b.ring[b.next] = id
		b.next = (b.next + 1) % maxRecentBatches
	}
	b.ids[id] = now
	return true
}
