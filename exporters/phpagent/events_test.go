package phpagent

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/exporters/fpm"
)

// TestEmitFPM checks the agent's side of the seam with exporters/fpm: the
// lookup hands out the in-flight request, the sink turns php-fpm's events
// into the agent's, enriched with it when the lookup found one.
func TestEmitFPM(t *testing.T) {
	a, reg := newTestAgent(t, func(c *Config) {
		c.FPM.StatusURIs = []string{"unix:///run/php/fpm.sock;/status"}
		c.FPM.Slowlogs = []string{"/var/log/slow.log"}
	})
	got := series(t, reg, "bitville_agent_events_total")
	for _, k := range []string{EventFPMLongRunning, EventFPMSlowlog} {
		if v, ok := got[`bitville_agent_events_total{kind=`+k+`}`]; !ok || v != 0 {
			t.Errorf("events of kind %s: got %v (present %v); want 0 from the start", k, v, ok)
		}
	}

	if _, ok := a.FPMRequest(26788); ok {
		t.Error("FPMRequest found a request on an idle worker")
	}
	if _, err := a.inflight.Start(startMsg(26788, "req-1", "GET /report", t0.Add(-2*time.Second)), "GET /report", t0); err != nil {
		t.Fatal(err)
	}
	req, ok := a.FPMRequest(26788)
	if !ok || req.PID != 26788 || !req.Started.Equal(t0.Add(-2*time.Second)) {
		t.Fatalf("got %+v, %v; want the in-flight request of pid 26788", req, ok)
	}
	w := &fpm.Worker{PID: 26788, State: "Running", URI: "/report"}
	a.EmitFPM(fpm.Event{Kind: fpm.EventLongRunning, Time: t0, Seconds: 2, Request: req, Worker: w})
	entry := &fpm.SlowlogEntry{Pool: "www", PID: 4242, Frames: []fpm.SlowlogFrame{{Function: "sleep", File: "/x.php", Line: 3}}}
	a.EmitFPM(fpm.Event{Kind: fpm.EventSlowlog, Time: t0, Request: fpm.Request{Pool: "www", PID: 4242}, Slowlog: entry})

	ev := a.Events()
	if len(ev) != 2 {
		t.Fatalf("got %d events; want 2", len(ev))
	}
	slow, long := ev[0], ev[1]
	if long.Kind != EventFPMLongRunning || long.Request.ID != "req-1" || long.Request.Project != "shop" || long.FPMWorker != w || long.Seconds != 2 {
		t.Errorf("got %+v; want the long-running worker's event with the PHP agent's request", long)
	}
	if slow.Kind != EventFPMSlowlog || slow.Request.Pool != "www" || slow.Request.PID != 4242 || slow.Request.ID != "" || slow.Slowlog != entry {
		t.Errorf("got %+v; want the slowlog event with what php-fpm knows of its request", slow)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"kind":"fpm_slowlog"`, `"slowlog":{"time":`, `"frames":[{"function":"sleep","file":"/x.php","line":3}]`,
		`"kind":"fpm_long_running"`, `"fpm_worker":{"pid":26788,"state":"Running"`, `"request":{"project":"shop","endpoint":"GET /report","operation":"GET /report","id":"req-1"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("events JSON lacks %s:\n%s", want, b)
		}
	}
	if v := series(t, reg, "bitville_agent_events_total")[`bitville_agent_events_total{kind=fpm_slowlog}`]; v != 1 {
		t.Errorf("got %v fpm_slowlog events counted; want 1", v)
	}
}
