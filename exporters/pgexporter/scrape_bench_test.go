package pgexporter

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/stack"
)

// BenchmarkScrape is one GET /metrics of the exporter (all collectors,
// default flags, with one and with two scrape connections) against a throwaway PostgreSQL holding about 200
// statement shapes in pg_stat_statements: the database round trips and
// the exposition together. The side-by-side comparison with Debian's
// postgres_exporter is BenchmarkPgExporterVsPostgresExporter in
// cmd/bitville-apm.
func BenchmarkScrape(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := stack.StartPostgres(ctx, stack.PostgresConfig{Dir: filepath.Join(b.TempDir(), "pg"), Preload: []string{"pg_stat_statements"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pg.Stop() })
	var sql strings.Builder
	sql.WriteString("CREATE EXTENSION pg_stat_statements;\n")
	for t := 0; t < 20; t++ {
		fmt.Fprintf(&sql, "CREATE TABLE w%d (id int PRIMARY KEY, v text, n int);\nINSERT INTO w%d SELECT g, 'v' || g, g %% 7 FROM generate_series(1, 100) g;\n", t, t)
		for _, s := range []string{"SELECT v FROM w%d WHERE id = 3", "SELECT count(*) FROM w%d", "UPDATE w%d SET n = n + 1 WHERE id = 7",
			"SELECT n, count(*) FROM w%d GROUP BY n", "SELECT id, v FROM w%d ORDER BY id DESC LIMIT 5", "SELECT avg(n) FROM w%d WHERE id < 50",
			"SELECT max(id), min(id) FROM w%d", "SELECT id FROM w%d WHERE v = 'v5'", "SELECT sum(id) FROM w%d WHERE v LIKE 'v1%%'",
			"SELECT a.id FROM w%d a JOIN w0 b ON a.id = b.id WHERE a.n = 2"} {
			fmt.Fprintf(&sql, s+";\n", t)
		}
	}
	if _, err := pg.Exec(ctx, "postgres", sql.String()); err != nil {
		b.Fatal(err)
	}
	for _, conns := range []int{1, 2} {
		b.Run(fmt.Sprintf("connections=%d", conns), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Connections = conns
			cfg.DSNs = []string{fmt.Sprintf("postgres://%s@%s:%d/postgres?sslmode=disable", pg.User, pg.Host, pg.Port)}
			e, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			reg := prometheus.NewRegistry()
			reg.MustRegister(e)
			h := e.Handler(reg, "bench")
			scrape := func() int {
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				req.Header.Set("Accept", "text/plain;version=0.0.4")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
				return w.Body.Len()
			}
			for range 3 {
				scrape()
			}
			b.ReportAllocs()
			size := 0
			for b.Loop() {
				size = scrape()
			}
			b.ReportMetric(float64(size), "bytes/scrape")
		})
	}
}
