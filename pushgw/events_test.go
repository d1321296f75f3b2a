package pushgw

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/push"
	"github.com/bitville/bitville-apm/internal/rawtrace"
)

// eventLine is one line of an events push as a pushing daemon's sink
// writes it.
func eventLine(t *testing.T, e rawtrace.Event) string {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func testEvent(project, cid string) rawtrace.Event {
	return rawtrace.Event{Kind: "request", Level: rawtrace.LevelWarning, Priority: rawtrace.PrioritySlow, Project: project,
		Time: time.Now().UTC().Truncate(time.Millisecond), Summary: "GET /a 200 2.5s slow", IDs: rawtrace.IDs{CorrelationID: cid},
		Line: json.RawMessage(`{"kind":"request","project":"` + project + `","correlation_id":"` + cid + `","wall":2.5}`)}
}

// pushEvents posts body as an events push of token; batch "" is the
// body's SHA-256.
func (g *testGateway) pushEvents(t *testing.T, token, batch, body string) (int, string, http.Header) {
	t.Helper()
	if batch == "" {
		sum := sha256.Sum256([]byte(body))
		batch = hex.EncodeToString(sum[:])
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, g.base+push.EventsPath, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", push.EventsContentType)
	req.Header.Set(push.HeaderJob, "bitville-apm-agent")
	req.Header.Set(push.HeaderInstance, "web-1")
	req.Header.Set(push.HeaderBatch, batch)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestEventsPush(t *testing.T) {
	cfg := testConfig(t)
	cfg.EventsRate, cfg.EventsBurst = 1, 10
	g := startGateway(t, cfg)

	body := eventLine(t, testEvent("shop", "c-1")) + "\n" + eventLine(t, testEvent("blog", "c-2")) + "\n"
	code, answer, _ := g.pushEvents(t, shopToken, "", body)
	if code != 200 || !strings.Contains(answer, `"accepted"`) {
		t.Fatalf("push: got %d %s; want 200 accepted", code, answer)
	}
	got := g.events.all()
	if len(got) != 2 {
		t.Fatalf("forwarded %d events; want 2", len(got))
	}
	for _, e := range got {
		if e.Project != "shop" || e.Job != "bitville-apm-agent" || e.Instance != "web-1" {
			t.Errorf("forwarded project %q job %q instance %q; want shop, the push's job and instance", e.Project, e.Job, e.Instance)
		}
		if !bytes.Contains(e.Line, []byte(`"project":"shop"`)) {
			t.Errorf("line %s: want project shop", e.Line)
		}
	}
	if !bytes.Contains(got[1].Line, []byte(`"exported_project":"blog"`)) {
		t.Errorf("the event that claimed blog: line %s; want the claim kept as exported_project", got[1].Line)
	}
	if n := counterValue(g.m.rewritten.WithLabelValues("shop", kindEvents)); n != 1 {
		t.Errorf("rewritten{kind=events} = %v; want 1", n)
	}

	// A retried push (same body, same batch) is answered but not
	// forwarded again.
	code, answer, _ = g.pushEvents(t, shopToken, "", body)
	if code != 200 || !strings.Contains(answer, `"duplicate"`) || len(g.events.all()) != 2 {
		t.Errorf("retry: got %d %s and %d events forwarded; want 200 duplicate and still 2", code, answer, len(g.events.all()))
	}

	one := eventLine(t, testEvent("shop", "c-3")) + "\n"
	bad := []struct {
		name, token, batch, body string
		status                   int
		reason                   string
	}{
		{"wrong token", "nope-0123456789abcdef", "", one, 401, ReasonUnauthorized},
		{"batch is not the body's hash", shopToken, strings.Repeat("ab", 32), one, 400, ReasonBadHeader},
		{"not JSON", shopToken, "", "{nope\n", 400, "invalid_event"},
		{"unknown field", shopToken, "", `{"kind":"request","level":"info","line":{},"extra":1}` + "\n", 400, "invalid_event"},
		{"bad kind", shopToken, "", `{"kind":"Request!","level":"info","line":{}}` + "\n", 400, "invalid_event"},
		{"bad level", shopToken, "", `{"kind":"request","level":"fatal","line":{}}` + "\n", 400, "invalid_event"},
		{"line not an object", shopToken, "", `{"kind":"request","level":"info","line":[1]}` + "\n", 400, "invalid_event"},
		{"future time", shopToken, "", `{"kind":"request","level":"info","time":"2999-01-01T00:00:00Z","line":{}}` + "\n", 400, "invalid_event"},
		{"empty", shopToken, "", "\n\n", 400, ReasonMalformed},
		{"more than the burst", shopToken, "", strings.Repeat(one, 11), 413, "too_many_events"},
		// One good event and one bad: nothing of it is forwarded.
		{"a bad event among good ones", shopToken, "", one + `{"kind":"request","level":"nope","line":{}}` + "\n", 400, "invalid_event"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			before := len(g.events.all())
			code, answer, _ := g.pushEvents(t, c.token, c.batch, c.body)
			if code != c.status {
				t.Errorf("got %d %s; want %d", code, answer, c.status)
			}
			project := "shop"
			if c.status == 401 {
				project = unknownProject
			}
			if n := counterValue(g.m.rejected.WithLabelValues(project, kindEvents, c.reason)); n < 1 {
				t.Errorf("rejected{kind=events,reason=%s} = %v; want ≥ 1", c.reason, n)
			}
			if after := len(g.events.all()); after != before {
				t.Errorf("a refused push forwarded %d events", after-before)
			}
		})
	}

	// The rate: one event a second past a burst of 10; pushes of one
	// event each soon wait, with Retry-After.
	limited := false
	for i := 0; i < 20 && !limited; i++ {
		code, answer, h := g.pushEvents(t, shopToken, "", eventLine(t, testEvent("shop", "burst-"+strconv.Itoa(i)))+"\n")
		switch {
		case code == 429:
			limited = true
			if h.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		case code != 200:
			t.Fatalf("push %d: got %d %s", i, code, answer)
		}
	}
	if !limited {
		t.Error("20 events pushed at once past a burst of 10 and 1/s: got no 429")
	}
	// blog's bucket is its own.
	if code, answer, _ := g.pushEvents(t, blogToken, "", eventLine(t, testEvent("blog", "b-1"))+"\n"); code != 200 {
		t.Errorf("blog while shop is limited: got %d %s; want 200", code, answer)
	}
}

// A gateway without an event sink refuses events for good (422), so the
// pushing daemon drops and counts them rather than retrying forever.
func TestEventsWithoutSink(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	g.Server.events = nil
	code, answer, _ := g.pushEvents(t, shopToken, "", eventLine(t, testEvent("shop", "c"))+"\n")
	if code != http.StatusUnprocessableEntity {
		t.Errorf("got %d %s; want 422", code, answer)
	}
}

// FuzzDecodeEvent: no line of an events push crashes the gateway, and what
// it takes is under the pushing project with a line that is one JSON
// object.
func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"kind":"request","level":"warning","prio":1,"project":"shop","time":"2026-12-07T01:00:00Z","summary":"s","ids":{"correlation_id":"c"},"line":{"kind":"request","project":"blog"}}`))
	f.Add([]byte(`{"kind":"pg_locks","level":"error","line":{"project":1}}`))
	f.Add([]byte(`{"kind":"x","level":"info","line":{},"time":null}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	var cfg Config
	cfg.MaxClockSkew = time.Minute
	s := &Server{cfg: cfg, now: time.Now}
	f.Fuzz(func(t *testing.T, line []byte) {
		e, _, err := s.decodeEvent(line, "shop", "job", "web-1")
		if err != nil {
			return
		}
		if e.Project != "shop" || e.Job != "job" || e.Instance != "web-1" {
			t.Fatalf("taken under %q/%q/%q", e.Project, e.Job, e.Instance)
		}
		var obj map[string]any
		if err := json.Unmarshal(e.Line, &obj); err != nil {
			t.Fatalf("taken line %q is not one JSON object: %v", e.Line, err)
		}
		if p, ok := obj["project"]; ok {
			if _, isString := p.(string); isString && p != "shop" {
				t.Fatalf("taken line keeps project %v", p)
			}
		}
	})
}

// Copies of one batch pushed at once (a retry racing the original) are
// forwarded once.
func TestEventsConcurrentCopies(t *testing.T) {
	g := startGateway(t, testConfig(t))
	body := eventLine(t, testEvent("shop", "copy-1")) + "\n" + eventLine(t, testEvent("shop", "copy-2")) + "\n"
	const copies = 8
	answers := make(chan string, copies)
	var wg sync.WaitGroup
	for i := 0; i < copies; i++ {
		wg.Go(func() {
			code, answer, _ := g.pushEvents(t, shopToken, "", body)
			answers <- strconv.Itoa(code) + " " + answer
		})
	}
	wg.Wait()
	close(answers)
	accepted := 0
	for a := range answers {
		switch {
		case strings.Contains(a, `"accepted"`):
			accepted++
		case !strings.Contains(a, `"duplicate"`):
			t.Errorf("got %s; want accepted or duplicate", a)
		}
	}
	if accepted != 1 || len(g.events.all()) != 2 {
		t.Errorf("%d copies accepted, %d events forwarded; want 1 and 2", accepted, len(g.events.all()))
	}
}
