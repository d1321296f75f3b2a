package phpagent

import (
	"encoding/json"
	"html/template"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var landing = template.Must(template.New("landing").Parse(`<!DOCTYPE html>
<html><head><title>bitville-apm agent</title></head>
<body>
<h1>bitville-apm agent</h1>
<p>Version {{.Version}}. Receives PHP request messages on <code>{{.Socket}}</code>.</p>
<ul>
<li><a href="metrics">metrics</a> — Prometheus metrics</li>
<li><a href="api/v1/inflight">api/v1/inflight</a> — requests in flight, longest running first, with their latest stacks</li>
<li><a href="api/v1/events">api/v1/events</a> — recent abandoned and long-running requests, php-fpm slowlog entries</li>
<li><a href="api/v1/fpm">api/v1/fpm</a> — php-fpm pools and their workers, running first; followed slowlogs</li>
<li><a href="healthz">healthz</a>, <a href="readyz">readyz</a></li>
</ul>
</body></html>
`))

// Handler returns the agent's HTTP handler: /, /metrics (from g),
// /healthz, /readyz, /api/v1/inflight and /api/v1/events. The command
// serves exporters/fpm's /api/v1/fpm beside it; the landing page links it.
func (a *Agent) Handler(g prometheus.Gatherer, version string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metricsHandler(g))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !a.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not reading the socket\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /api/v1/inflight", func(w http.ResponseWriter, _ *http.Request) {
		now := a.now()
		type item struct {
			InflightRequest
			Seconds     float64 `json:"seconds"`
			LongRunning bool    `json:"long_running"`
		}
		snap := a.Inflight()
		out := make([]item, len(snap))
		for i, r := range snap {
			age := r.Age(now)
			out[i] = item{InflightRequest: r, Seconds: age.Seconds(), LongRunning: age >= a.cfg.LongRequestThreshold}
		}
		writeJSON(w, map[string]any{"time": now.UTC().Format(time.RFC3339Nano), "requests": out})
	})
	mux.HandleFunc("GET /api/v1/events", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"events": a.Events()})
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = landing.Execute(w, map[string]string{"Version": version, "Socket": a.cfg.Socket})
	})
	return mux
}

func (a *Agent) metricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorHandling:     promhttp.ContinueOnError,
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
