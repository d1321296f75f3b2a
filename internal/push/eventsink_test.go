package push

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/flagdefaults"
	"github.com/bitville/bitville-apm/internal/rawtrace"
)

func testEvents() []rawtrace.Event {
	at := time.Date(2026, 12, 7, 1, 2, 3, 0, time.UTC)
	return []rawtrace.Event{
		{Kind: "slow_request", Level: rawtrace.LevelWarning, Priority: rawtrace.PrioritySlow, Project: "shop", Time: at, Summary: "GET /cart 2.1s", IDs: rawtrace.IDs{RequestID: "r1"}, Line: json.RawMessage(`{"kind":"slow_request","ms":2100}`)},
		{Kind: "failed_request", Level: rawtrace.LevelError, Priority: rawtrace.PriorityError, Project: "shop", Time: at, Summary: "POST /pay 500", Line: json.RawMessage(`{"kind":"failed_request","status":500}`)},
	}
}

func newTestSink(t *testing.T, url string, now func() time.Time) *EventSink {
	t.Helper()
	s, err := NewEventSink(testConfig(t, url), Options{Job: "bitville-apm-agent", Instance: "web-1", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func sendCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEventSinkRequest(t *testing.T) {
	gw := newGateway(t)
	s := newTestSink(t, gw.srv.URL, nil)
	if s.Name() != "pushgw" {
		t.Errorf("Name() = %q; want pushgw", s.Name())
	}
	events := testEvents()
	if err := s.Send(sendCtx(t), events); err != nil {
		t.Fatal(err)
	}
	reqs := gw.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests; want 1", len(reqs))
	}
	r := reqs[0]
	sum := sha256.Sum256(r.body)
	want := map[string]string{
		"Authorization":    "Bearer " + testToken,
		"Content-Type":     EventsContentType,
		"Content-Encoding": "gzip",
		HeaderJob:          "bitville-apm-agent",
		HeaderInstance:     "web-1",
		HeaderBatch:        hex.EncodeToString(sum[:]),
	}
	for k, v := range want {
		if got := r.header.Get(k); got != v {
			t.Errorf("header %s = %q; want %q", k, got, v)
		}
	}
	if r.method != http.MethodPost || r.path != EventsPath {
		t.Errorf("got %s %s; want POST %s", r.method, r.path, EventsPath)
	}
	lines := bytes.Split(bytes.TrimSuffix(r.body, []byte("\n")), []byte("\n"))
	if len(lines) != len(events) || !bytes.HasSuffix(r.body, []byte("\n")) {
		t.Fatalf("body %q; want %d lines, each ending in a newline", r.body, len(events))
	}
	for i, line := range lines {
		wantLine, err := json.Marshal(events[i])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(line, wantLine) {
			t.Errorf("line %d = %s; want %s", i+1, line, wantLine)
		}
	}
	if err := s.Send(sendCtx(t), nil); err != nil || len(gw.requests()) != 1 {
		t.Errorf("an empty batch: got %v and %d requests; want nil and none sent", err, len(gw.requests())-1)
	}
}

func TestEventSinkAnswers(t *testing.T) {
	tests := []struct {
		status int
		want   string // nil, permanent, retry
	}{
		{http.StatusOK, "nil"},
		{http.StatusAccepted, "nil"},
		{http.StatusNoContent, "nil"},
		{http.StatusBadRequest, "permanent"},
		{http.StatusRequestEntityTooLarge, "permanent"},
		{http.StatusUnsupportedMediaType, "permanent"},
		{http.StatusUnprocessableEntity, "permanent"},
		{http.StatusUnauthorized, "retry"},
		{http.StatusForbidden, "retry"},
		{http.StatusNotFound, "retry"},
		{http.StatusTooManyRequests, "retry"},
		{http.StatusInternalServerError, "retry"},
		{http.StatusServiceUnavailable, "retry"},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			gw := newGateway(t)
			gw.setAnswer(func(int, http.Header) (int, string) { return tt.status, "" })
			err := newTestSink(t, gw.srv.URL, nil).Send(sendCtx(t), testEvents())
			var perm *rawtrace.PermanentError
			got := "retry"
			switch {
			case err == nil:
				got = "nil"
			case errors.As(err, &perm):
				got = "permanent"
			}
			if got != tt.want {
				t.Errorf("HTTP %d: got %s (%v); want %s", tt.status, got, err, tt.want)
			}
		})
	}
}

func TestEventSinkUnreachable(t *testing.T) {
	gw := newGateway(t)
	url := gw.srv.URL
	gw.srv.Close()
	err := newTestSink(t, url, nil).Send(sendCtx(t), testEvents())
	var perm *rawtrace.PermanentError
	if err == nil || errors.As(err, &perm) {
		t.Errorf("got %v; want a retryable error", err)
	}
}

func TestEventSinkWaitsForRetryAfter(t *testing.T) {
	gw := newGateway(t)
	gw.setAnswer(func(n int, _ http.Header) (int, string) {
		if n == 0 {
			return http.StatusTooManyRequests, "30"
		}
		return http.StatusOK, ""
	})
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	s := newTestSink(t, gw.srv.URL, func() time.Time { return now })
	if err := s.Send(sendCtx(t), testEvents()); err == nil {
		t.Fatal("a 429: got no error")
	}
	now = now.Add(29 * time.Second)
	if err := s.Send(sendCtx(t), testEvents()); err == nil || len(gw.requests()) != 1 {
		t.Fatalf("within Retry-After: got %v after %d requests; want an error and no request", err, len(gw.requests()))
	}
	now = now.Add(time.Second)
	if err := s.Send(sendCtx(t), testEvents()); err != nil || len(gw.requests()) != 2 {
		t.Errorf("after Retry-After: got %v after %d requests; want it sent", err, len(gw.requests()))
	}
}

func TestEventSinkLeavesOutEventsItCannotEncode(t *testing.T) {
	gw := newGateway(t)
	s := newTestSink(t, gw.srv.URL, nil)
	events := testEvents()
	events[0].Line = json.RawMessage(`{not json}`)
	err := s.Send(sendCtx(t), events)
	var part *rawtrace.PartialError
	if !errors.As(err, &part) || part.Rejected != 1 {
		t.Fatalf("got %v; want a PartialError with 1 refused", err)
	}
	if reqs := gw.requests(); len(reqs) != 1 || bytes.Count(reqs[0].body, []byte("\n")) != 1 {
		t.Errorf("got %d requests; want one with the one good event", len(reqs))
	}
	events[1].Line = events[0].Line
	var perm *rawtrace.PermanentError
	if err := s.Send(sendCtx(t), events); !errors.As(err, &perm) {
		t.Errorf("no event encodable: got %v; want a PermanentError", err)
	}
}

// The sink fits the raw-trace pipeline: it spools, batches and retries
// in front of it.
func TestEventSinkInPipeline(t *testing.T) {
	gw := newGateway(t)
	sink := newTestSink(t, gw.srv.URL, nil)
	var cfg rawtrace.Config
	flagdefaults.Must(&cfg)
	cfg.SpoolDir = t.TempDir()
	cfg.BatchWait = time.Millisecond
	p, err := rawtrace.NewWithSinks(cfg, rawtrace.Options{}, prometheus.NewRegistry(), sink)
	if err != nil {
		t.Fatal(err)
	}
	stop := p.Start()
	defer stop()
	for _, e := range testEvents() {
		p.Emit(e)
	}
	waitFor(t, "the events pushed", func() bool {
		n := 0
		for _, r := range gw.requests() {
			n += bytes.Count(r.body, []byte("\n"))
		}
		return n == len(testEvents())
	})
}

func TestEventSinkVerifiesTheServerWithTheCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer srv.Close()
	ca := writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	tests := []struct {
		name   string
		caFile string
		ok     bool
	}{
		{"with the CA", ca, true},
		{"without it", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, srv.URL)
			cfg.TLS.CAFile = tt.caFile
			s, err := NewEventSink(cfg, Options{Job: "j", Instance: "i"})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Send(sendCtx(t), testEvents()); (err == nil) != tt.ok {
				t.Errorf("got %v; want ok %v", err, tt.ok)
			}
		})
	}
}
