package pgexporter

import (
	"encoding/json"
	"html/template"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var landing = template.Must(template.New("landing").Parse(`<!doctype html>
<html><head><title>bitville-apm pg-exporter</title></head><body>
<h1>bitville-apm pg-exporter {{.Version}}</h1>
<p>Servers: {{range .Servers}}<code>{{.}}</code> {{end}}</p>
<ul><li><a href="metrics">/metrics</a></li><li><a href="api/v1/locks">/api/v1/locks</a> (recent lock trees, JSON)</li><li><a href="healthz">/healthz</a></li><li><a href="readyz">/readyz</a></li></ul>
</body></html>
`))

// Handler serves /, /metrics, /api/v1/locks, /healthz and /readyz.
// /api/v1/locks is the recent lock trees (LockTrees), oldest first, as a
// JSON array. /readyz is ready once
// the exporter is configured: a server that is down is reported through
// bitville_pg_up, not by failing readiness.
func (e *Exporter) Handler(g prometheus.Gatherer, version string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		// A scrape never waits for another: the exporter serialises them,
		// and each answers within the scrape timeout.
		MaxRequestsInFlight: 4,
		Timeout:             e.cfg.ScrapeTimeout + 2*time.Second,
	}))
	ok := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	}
	mux.HandleFunc("GET /api/v1/locks", func(w http.ResponseWriter, _ *http.Request) {
		trees := e.LockTrees()
		if trees == nil {
			trees = []LockTree{}
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(trees)
	})
	mux.HandleFunc("GET /healthz", ok)
	mux.HandleFunc("GET /readyz", ok)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		labels := make([]string, len(e.servers))
		for i, s := range e.servers {
			labels[i] = s.srv.label
		}
		_ = landing.Execute(w, map[string]any{"Version": version, "Servers": labels})
	})
	return mux
}
