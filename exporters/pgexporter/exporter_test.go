package pgexporter

import (
	"strconv"
	"strings"
	"testing"

	"github.com/bitville/bitville-apm/internal/stack"
)

// exporterSessions counts the sessions on pg with application_name app.
func exporterSessions(t *testing.T, pg *stack.Postgres, app string) int {
	t.Helper()
	n, err := strconv.Atoi(exec(t, pg, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = '"+app+"'"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A scrape spreads its collectors over pg.connections connections and
// holds exactly that many, plus the sampler's one; every collector still
// succeeds, whatever the number.
func TestScrapeConnections(t *testing.T) {
	pg := startPG(t)
	server := "127.0.0.1:" + itoa(pg.Port) + "/postgres"
	for _, conns := range []int{1, 2, 3} {
		t.Run(itoa(conns), func(t *testing.T) {
			// A name of its own: the previous subtest's sessions may not
			// have ended yet.
			app := "pg-exporter test " + itoa(conns)
			e, reg := newTestExporter(t, func(c *Config) { c.Connections = conns }, pg.DSN("postgres")+"&application_name="+strings.ReplaceAll(app, " ", "%20"))
			runBackground(t, e)
			var m map[string]float64
			for range 3 {
				m = gather(t, reg)
			}
			names := 0
			for k, v := range m {
				if strings.HasPrefix(k, "bitville_pg_scrape_collector_success{") {
					names++
					if v != 1 {
						t.Errorf("%s = %v; want 1\n%s", k, v, errText(e))
					}
				}
			}
			if names != len(collectorFactories)+1 {
				t.Errorf("got %d collector results; want %d", names, len(collectorFactories)+1)
			}
			waitFor(t, e, reg, "a background sample", func(m map[string]float64) bool {
				return m["bitville_pg_activity_samples_total{result=ok,server="+server+"}"] >= 1
			})
			if got := exporterSessions(t, pg, app); got != conns+1 {
				t.Errorf("the exporter holds %d sessions; want %d (pg.connections) + 1 (the sampler)", got, conns)
			}
		})
	}
}

func TestConnectionsValidated(t *testing.T) {
	for _, n := range []int{0, 9} {
		cfg := DefaultConfig()
		cfg.DSNs = []string{"postgres://h/db"}
		cfg.Connections = n
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "pg.connections") {
			t.Errorf("pg.connections %d: got %v; want an error naming it", n, err)
		}
	}
}

// Planning time is exposed only while pg_stat_statements tracks it.
func TestStatementsPlanningOnlyWhenTracked(t *testing.T) {
	pg := startPG(t) // track_planning on
	_, reg := newTestExporter(t, nil, pg.DSN("postgres"))
	exec(t, pg, "postgres", "SELECT 42 AS answer")
	count := func(m map[string]float64, name string) int {
		n := 0
		for k := range m {
			if strings.HasPrefix(k, name+"{") {
				n++
			}
		}
		return n
	}
	m := gather(t, reg)
	calls, planning := count(m, "bitville_pg_statement_calls_total"), count(m, "bitville_pg_statement_planning_seconds_total")
	if calls == 0 || planning != calls {
		t.Fatalf("track_planning on: %d planning series for %d statements; want one each", planning, calls)
	}
	// The server's setting comes from its command line; a database
	// setting overrides it for new sessions, such as a new exporter's.
	exec(t, pg, "postgres", "ALTER DATABASE postgres SET pg_stat_statements.track_planning = off")
	_, reg = newTestExporter(t, nil, pg.DSN("postgres"))
	m = gather(t, reg)
	if got := count(m, "bitville_pg_statement_planning_seconds_total"); got != 0 {
		t.Errorf("track_planning off: %d planning series; want none", got)
	}
	if got := count(m, "bitville_pg_statement_calls_total"); got < calls {
		t.Errorf("track_planning off: %d statements; want at least the %d seen before", got, calls)
	}
}

// The exporter's queries are prepared once per connection: when what they
// name goes away and comes back, the collector fails for that scrape and
// then prepares again, on the same connection.
func TestPreparedStatementsRecover(t *testing.T) {
	pg := startPG(t)
	e, reg := newTestExporter(t, func(c *Config) { c.Connections = 1 }, pg.DSN("postgres"))
	server := "127.0.0.1:" + itoa(pg.Port) + "/postgres"
	success := "bitville_pg_scrape_collector_success{collector=statements,server=" + server + "}"
	pid := func() string {
		return exec(t, pg, "postgres", "SELECT pid FROM pg_stat_activity WHERE application_name = 'bitville-apm pg-exporter'")
	}
	if m := gather(t, reg); m[success] != 1 {
		t.Fatalf("statements failed at first\n%s", errText(e))
	}
	before := pid()
	exec(t, pg, "postgres", "DROP EXTENSION pg_stat_statements")
	m := gather(t, reg)
	if m[success] != 0 || m["bitville_pg_up{server="+server+"}"] != 1 {
		t.Errorf("without the extension: statements success %v, up %v; want 0, 1", m[success], m["bitville_pg_up{server="+server+"}"])
	}
	exec(t, pg, "postgres", "CREATE EXTENSION pg_stat_statements")
	if m := gather(t, reg); m[success] != 1 {
		t.Errorf("with the extension again: statements success %v; want 1\n%s", m[success], errText(e))
	}
	if after := pid(); after != before {
		t.Errorf("the connection was replaced (backend %s, then %s); a server error should keep it", before, after)
	}
}
