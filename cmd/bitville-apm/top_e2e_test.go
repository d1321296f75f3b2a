package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/demo"
	"github.com/bitville/bitville-apm/internal/top"
)

// TestTopScenariosEndToEnd runs the demo stack (the example shop on real
// PostgreSQL, php-fpm and nginx, the agent, the pg-exporter,
// node_exporter and Prometheus scraping every second) and makes each
// demo scenario's spike after a quiet baseline. `bitville-apm top`, asked
// about the spike against the baseline, must rank the scenario's culprit
// first in its category and name the right cause in its verdict. Each
// scenario is a subtest on the one stack: -run 'TestTopScenariosEndToEnd/cron'
// makes only that spike.
func TestTopScenariosEndToEnd(t *testing.T) {
	requirePHPExtension(t, "excimer", "php-excimer")
	bin := buildBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s, err := demo.Start(ctx, demo.Options{Dir: filepath.Join(t.TempDir(), "demo"), Binary: bin, ScrapeInterval: time.Second,
		Children: 4, TerminateTimeout: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping the demo stack: %v", err)
		}
	})
	const quiet, spike = 15 * time.Second, 20 * time.Second
	for _, sc := range demo.Scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			base := time.Now()
			s.Baseline(ctx, quiet)
			from := time.Now()
			if err := s.Spike(ctx, sc, spike); err != nil {
				t.Fatal(err)
			}
			to := time.Now()
			time.Sleep(2 * time.Second) // the last scrape of the window
			args := []string{"top", "--prometheus.url=" + s.Prometheus.URL, fmt.Sprintf("--from=%d", from.Unix()), fmt.Sprintf("--to=%d", to.Unix()),
				"--baseline=" + from.Sub(base).Round(time.Second).String()}
			var table bytes.Buffer
			cmd := exec.Command(bin, append(args, "--format=table")...)
			cmd.Stdout, cmd.Stderr = &table, &table
			if err := cmd.Run(); err != nil {
				t.Fatalf("top: %v\n%s", err, table.String())
			}
			t.Logf("bitville-apm %s\n%s", strings.Join(args, " "), table.String())
			out, err := exec.Command(bin, append(args, "--format=json")...).Output()
			if err != nil {
				t.Fatalf("top --format=json: %v", err)
			}
			var r top.Report
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			checkScenario(t, sc, &r)
		})
	}
}

func checkScenario(t *testing.T, sc demo.Scenario, r *top.Report) {
	t.Helper()
	first := func(n int) bool { return n > 0 }
	switch sc.Name {
	case "cpu":
		if !first(len(r.Endpoints)) || r.Endpoints[0].Name != sc.Endpoint {
			t.Errorf("cpu: first endpoint %+v; want %s", r.Endpoints, sc.Endpoint)
		}
		if !first(len(r.Functions)) || r.Functions[0].Name != sc.Function {
			t.Errorf("cpu: first function %+v; want %s", r.Functions, sc.Function)
		}
		if !strings.HasPrefix(r.Verdict, "CPU in PHP: GET /report") {
			t.Errorf("cpu: verdict %q", r.Verdict)
		}
	case "slow-sql":
		if !first(len(r.Queries)) || !strings.Contains(r.Queries[0].Name, sc.QueryContains) || r.Queries[0].TopEndpoint != sc.Endpoint {
			t.Errorf("slow-sql: first query %+v; want one with %q from %s", r.Queries, sc.QueryContains, sc.Endpoint)
		}
		if !strings.HasPrefix(r.Verdict, "Slow SQL: ") || !strings.Contains(r.Verdict, sc.QueryContains) {
			t.Errorf("slow-sql: verdict %q", r.Verdict)
		}
	case "locks":
		if !first(len(r.Waits)) || r.Waits[0].WaitEventType != sc.WaitEventType {
			t.Errorf("locks: first wait %+v; want type %s", r.Waits, sc.WaitEventType)
		}
		if !first(len(r.Queries)) || !strings.Contains(r.Queries[0].Name, sc.QueryContains) {
			t.Errorf("locks: first query %+v; want %q", r.Queries, sc.QueryContains)
		}
		if !strings.HasPrefix(r.Verdict, "Lock contention: ") {
			t.Errorf("locks: verdict %q", r.Verdict)
		}
	case "stuck":
		if !first(len(r.Endpoints)) || r.Endpoints[0].Name != sc.Endpoint || r.Endpoints[0].Window.Abandoned <= 0 {
			t.Errorf("stuck: first endpoint %+v; want %s with abandoned requests", r.Endpoints, sc.Endpoint)
		}
		if !strings.HasPrefix(r.Verdict, "Stuck requests: GET /stuck") {
			t.Errorf("stuck: verdict %q", r.Verdict)
		}
	case "session", "partner":
		if !first(len(r.Endpoints)) || r.Endpoints[0].Name != sc.Endpoint {
			t.Errorf("%s: first endpoint %+v; want %s", sc.Name, r.Endpoints, sc.Endpoint)
		}
		if !first(len(r.Functions)) || r.Functions[0].Name != sc.Function || r.Functions[0].Caller != sc.Caller {
			t.Errorf("%s: first function %+v; want %s called from %s", sc.Name, r.Functions, sc.Function, sc.Caller)
		} else if f := r.Functions[0]; f.Window.Wall <= f.Window.CPU {
			t.Errorf("%s: %s holds %.2f workers and %.2f cores; want it waiting (more wall than CPU)", sc.Name, f.Name, f.Window.Wall, f.Window.CPU)
		}
		if want := "Workers wait in " + sc.Function + "() called from " + sc.Caller; !strings.HasPrefix(r.Verdict, want) {
			t.Errorf("%s: verdict %q; want it to start with %q", sc.Name, r.Verdict, want)
		}
	case "process":
		if !first(len(r.Processes)) || r.Processes[0].Name != sc.Process || r.Processes[0].Group != "other" {
			t.Errorf("process: first process %+v; want %s (group other)", r.Processes, sc.Process)
		}
		if want := "Not PHP: " + sc.Process + " uses "; !strings.HasPrefix(r.Verdict, want) {
			t.Errorf("process: verdict %q; want it to start with %q", r.Verdict, want)
		}
	case "cron":
		if !first(len(r.Endpoints)) || r.Endpoints[0].Name != sc.Endpoint {
			t.Errorf("cron: first endpoint %+v; want %s", r.Endpoints, sc.Endpoint)
		}
		if !first(len(r.Functions)) || r.Functions[0].Name != sc.Function {
			t.Errorf("cron: first function %+v; want %s", r.Functions, sc.Function)
		}
		if !strings.HasPrefix(r.Verdict, "CPU in PHP: "+sc.Endpoint) || !strings.Contains(r.Verdict, "most of it in "+sc.Function) {
			t.Errorf("cron: verdict %q; want CPU in PHP in %s, most of it in %s", r.Verdict, sc.Endpoint, sc.Function)
		}
	default:
		t.Errorf("no check for scenario %s", sc.Name)
	}
}
