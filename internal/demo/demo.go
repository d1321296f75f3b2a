// Package demo runs the whole Bitville APM stack locally on the example
// shop — PostgreSQL, php-fpm with the PHP agent, nginx, the agent, the
// pg-exporter, node_exporter and Prometheus with alerts/ — and makes load:
// a light baseline and a spike with one known culprit. `make demo` and the
// end-to-end test of `bitville-apm top` use it.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bitville/bitville-apm/internal/mixin"
	"github.com/bitville/bitville-apm/internal/stack"
)

// Scenario is a kind of spike, with its culprit.
type Scenario struct {
	Name        string
	Description string
	// What `top` should rank first.
	Endpoint, Function, QueryContains, WaitEventType string
}

// Scenarios are the spikes the demo can make.
var Scenarios = []Scenario{
	{Name: "cpu", Description: "GET /report on every worker: a price simulation burning CPU in App\\Pricing::recalculate",
		Endpoint: "GET /report", Function: `App\Pricing::recalculate`},
	{Name: "slow-sql", Description: "GET /slow-sql on every worker: a report whose query sleeps in the database",
		Endpoint: "GET /slow-sql", QueryContains: "pg_sleep"},
	{Name: "locks", Description: "the close-books cron job holds order 7 locked while every worker tries POST /orders/7/pay",
		QueryContains: "UPDATE orders SET status", WaitEventType: "Lock"},
	{Name: "stuck", Description: "GET /stuck on every worker: requests waiting on a lock nobody releases, killed by request_terminate_timeout",
		Endpoint: "GET /stuck"},
}

// ScenarioByName returns the scenario called name.
func ScenarioByName(name string) (Scenario, error) {
	var names []string
	for _, s := range Scenarios {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Scenario{}, fmt.Errorf("unknown scenario %q (one of %s)", name, strings.Join(names, ", "))
}

// Options configure the stack.
type Options struct {
	Dir              string        // everything goes under it (created)
	Binary           string        // bitville-apm
	ScrapeInterval   time.Duration // Prometheus's; default 5s
	Children         int           // php-fpm workers; default 4
	TerminateTimeout time.Duration // php-fpm request_terminate_timeout; default 10s
	Log              io.Writer     // progress lines; nil = none

	// For tests that need more than the demo does:
	RuleFiles            []string          // Prometheus's rule files; default the repository's alerts/
	AgentEnv             map[string]string // PHP agent settings (BITVILLE_APM_*) over the demo's
	AppEnv               map[string]string // shop settings (APP_*) over the demo's
	LongRequestThreshold time.Duration     // the agent's; default 5s
	NodeCollectors       []string          // node_exporter's collectors; nil = its defaults
}

// Stack is the running stack.
type Stack struct {
	Shop          *stack.Shop
	Node          *stack.NodeExporter
	Prometheus    *stack.Prometheus
	AgentURL      string // http://127.0.0.1:port of the agent
	PgExporterURL string

	opts   Options
	daemon []*daemon
	client http.Client
}

type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func (s *Stack) logf(format string, args ...any) {
	if s.opts.Log != nil {
		fmt.Fprintf(s.opts.Log, format+"\n", args...)
	}
}

// Start starts everything; on error it stops what it started.
func Start(ctx context.Context, o Options) (s *Stack, err error) {
	if o.Dir == "" || o.Binary == "" {
		return nil, errors.New("demo: Options.Dir and Options.Binary are required")
	}
	if o.ScrapeInterval <= 0 {
		o.ScrapeInterval = 5 * time.Second
	}
	if o.Children <= 0 {
		o.Children = 4
	}
	if o.TerminateTimeout <= 0 {
		o.TerminateTimeout = 10 * time.Second
	}
	if o.LongRequestThreshold <= 0 {
		o.LongRequestThreshold = 5 * time.Second
	}
	root, err := stack.RepoRoot()
	if err != nil {
		return nil, fmt.Errorf("demo: run it from the repository: %w", err)
	}
	s = &Stack{opts: o}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Stop())
			s = nil
		}
	}()
	socket := filepath.Join(o.Dir, "agent.sock")
	agentINI := filepath.Join(o.Dir, "php-agent.ini")
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return s, err
	}
	if err := os.WriteFile(agentINI, nil, 0o644); err != nil {
		return s, err
	}
	s.logf("starting PostgreSQL, php-fpm (%d workers, the PHP agent loaded) and nginx with the example shop", o.Children)
	s.Shop, err = stack.StartShop(ctx, stack.ShopConfig{
		Dir:   filepath.Join(o.Dir, "shop"),
		Agent: true,
		AgentEnv: overlay(map[string]string{
			"BITVILLE_APM_CONFIG":            agentINI,
			"BITVILLE_APM_ENABLED":           "1",
			"BITVILLE_APM_PROJECT":           "shop",
			"BITVILLE_APM_SOCKET":            socket,
			"BITVILLE_APM_PROFILER":          "excimer",
			"BITVILLE_APM_PROGRESS_AFTER_MS": "1000",
		}, o.AgentEnv),
		Env:              overlay(map[string]string{"APP_SLOW_SQL_SECONDS": "1", "APP_PRICING_ROUNDS": "30000"}, o.AppEnv),
		Children:         o.Children,
		SlowlogTimeout:   2 * time.Second,
		TerminateTimeout: o.TerminateTimeout,
	})
	if err != nil {
		return s, err
	}
	if _, err := s.Shop.PG.Exec(ctx, s.Shop.DB, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		return s, err
	}

	agentAddr, err := freeAddr()
	if err != nil {
		return s, err
	}
	if err := s.startDaemon(ctx, "agent", agentAddr, "agent", "--agent.socket="+socket, "--web.listen-address="+agentAddr,
		"--fpm.status-uri="+s.Shop.FPM.StatusURI(), "--fpm.slowlog="+s.Shop.FPM.SlowlogPath,
		"--agent.long-request-threshold="+o.LongRequestThreshold.String(), "--agent.min-queue-length=0"); err != nil {
		return s, err
	}
	s.AgentURL = "http://" + agentAddr
	pgAddr, err := freeAddr()
	if err != nil {
		return s, err
	}
	if err := s.startDaemon(ctx, "pg-exporter", pgAddr, "pg-exporter", "--pg.dsn="+s.Shop.PG.DSN(s.Shop.DB), "--web.listen-address="+pgAddr); err != nil {
		return s, err
	}
	s.PgExporterURL = "http://" + pgAddr
	if s.Node, err = stack.StartNodeExporter(ctx, stack.NodeExporterConfig{Dir: filepath.Join(o.Dir, "node_exporter"), Collectors: o.NodeCollectors}); err != nil {
		return s, err
	}
	rules := o.RuleFiles
	if rules == nil {
		rules = []string{filepath.Join(root, "alerts", "recording.rules.yml"), filepath.Join(root, "alerts", "alerts.rules.yml")}
	}
	s.logf("starting Prometheus (scrape every %s) with %s", o.ScrapeInterval, strings.Join(rules, ", "))
	jobs := mixin.DefaultConfig() // the job names the rules select
	s.Prometheus, err = stack.StartPrometheus(ctx, stack.PrometheusConfig{
		Dir:            filepath.Join(o.Dir, "prometheus"),
		ScrapeInterval: o.ScrapeInterval,
		RuleFiles:      rules,
		Jobs: []stack.ScrapeJob{
			{Name: jobs.NodeJob, Targets: []string{s.Node.Addr}},
			{Name: jobs.AgentJob, Targets: []string{agentAddr}},
			{Name: jobs.PgExporterJob, Targets: []string{pgAddr}},
		},
	})
	return s, err
}

// overlay returns base with over's entries set on it.
func overlay(base, over map[string]string) map[string]string {
	for k, v := range over {
		base[k] = v
	}
	return base
}

func freeAddr() (string, error) {
	p, err := stack.FreePort()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", p), nil
}

// startDaemon runs `bitville-apm <args>` with its log in the stack's
// directory and waits for /readyz.
func (s *Stack) startDaemon(ctx context.Context, name, addr string, args ...string) error {
	d := &daemon{name: name, done: make(chan struct{}), log: filepath.Join(s.opts.Dir, name+".log")}
	f, err := os.Create(d.log)
	if err != nil {
		return err
	}
	defer f.Close()
	d.cmd = exec.Command(s.opts.Binary, args...)
	d.cmd.Stdout, d.cmd.Stderr = f, f
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return fmt.Errorf("cannot start %s: %w", name, err)
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	s.daemon = append(s.daemon, d)
	for {
		resp, err := s.client.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-d.done:
			b, _ := os.ReadFile(d.log)
			return fmt.Errorf("%s exited while starting: %s", name, strings.TrimSpace(string(b)))
		case <-ctx.Done():
			return fmt.Errorf("%s did not become ready: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop stops everything, the load generators' targets last.
func (s *Stack) Stop() error {
	if s == nil {
		return nil
	}
	var errs []error
	if s.Prometheus != nil {
		errs = append(errs, s.Prometheus.Stop())
	}
	if s.Node != nil {
		errs = append(errs, s.Node.Stop())
	}
	for i := len(s.daemon) - 1; i >= 0; i-- {
		d := s.daemon[i]
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
	}
	if s.Shop != nil {
		errs = append(errs, s.Shop.Stop())
	}
	return errors.Join(errs...)
}

// request sends one request and drains the answer.
func (s *Stack) request(ctx context.Context, method, path string) {
	req, err := http.NewRequestWithContext(ctx, method, s.Shop.URL+path, nil)
	if err != nil {
		return
	}
	resp, err := s.client.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// Loop runs workers goroutines sending the requests ("METHOD /path") in
// turn, pause between two, until the returned stop is called (it waits for
// them) or ctx ends.
func (s *Stack) Loop(ctx context.Context, workers int, pause time.Duration, requests ...string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	s.loop(ctx, &wg, workers, pause, requests...)
	return func() { cancel(); wg.Wait() }
}

// Request sends one request ("METHOD /path") in the background.
func (s *Stack) Request(ctx context.Context, request string) {
	method, path, _ := strings.Cut(request, " ")
	go s.request(ctx, method, path)
}

// loop runs workers goroutines sending the requests ("METHOD /path") in
// turn, pause between two, until ctx ends.
func (s *Stack) loop(ctx context.Context, wg *sync.WaitGroup, workers int, pause time.Duration, requests ...string) {
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i++ {
				method, path, _ := strings.Cut(requests[i%len(requests)], " ")
				s.request(ctx, method, path)
				if pause > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(pause):
					}
				}
			}
		}()
	}
}

// baselineRequests are the everyday traffic: cheap pages and order views.
var baselineRequests = []string{"GET /cheap", "GET /orders/11", "GET /cheap", "GET /orders/12", "GET /quote/3", "GET /orders/13"}

// Baseline sends light everyday traffic for d.
func (s *Stack) Baseline(ctx context.Context, d time.Duration) {
	s.logf("baseline: light traffic for %s", d)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	s.loop(ctx, &wg, 1, 100*time.Millisecond, baselineRequests...)
	wg.Wait()
}

// Spike makes the scenario's spike for d, on top of the baseline traffic.
func (s *Stack) Spike(ctx context.Context, sc Scenario, d time.Duration) error {
	s.logf("spike %q for %s: %s", sc.Name, d, sc.Description)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	s.loop(ctx, &wg, 1, 100*time.Millisecond, baselineRequests...)
	workers := s.opts.Children
	switch sc.Name {
	case "cpu":
		s.loop(ctx, &wg, workers, 0, "GET /report")
	case "slow-sql":
		s.loop(ctx, &wg, workers, 0, "GET /slow-sql")
	case "stuck":
		s.loop(ctx, &wg, workers, 0, "GET /stuck")
	case "locks":
		// The job holds the row for a little less than php-fpm's
		// request_terminate_timeout, again and again.
		hold := max(s.opts.TerminateTimeout-2*time.Second, time.Second)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_, _ = s.Shop.RunCLI(context.Background(), "bin/close-books.php", "7", fmt.Sprintf("%.1f", hold.Seconds()))
			}
		}()
		s.loop(ctx, &wg, workers, 0, "POST /orders/7/pay")
	default:
		return fmt.Errorf("unknown scenario %q", sc.Name)
	}
	wg.Wait()
	return nil
}
