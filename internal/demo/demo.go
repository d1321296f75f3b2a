// Package demo runs the whole Bitville APM stack locally on the example
// shop — PostgreSQL, php-fpm with the PHP agent, nginx, the agent, the
// pg-exporter, node_exporter, Prometheus with alerts/ and a slow partner
// service the shop calls, and optionally pushgw with the agent pushing to
// it — and makes load: a light baseline and a spike with one known
// culprit. `make demo` and the end-to-end test of
// `bitville-apm top` use it.
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
	"syscall"
	"time"

	"github.com/bitville/bitville-apm/internal/mixin"
	"github.com/bitville/bitville-apm/internal/stack"
)

// Options configure the stack.
type Options struct {
	Dir              string        // everything goes under it (created)
	Binary           string        // bitville-apm
	ScrapeInterval   time.Duration // Prometheus's; default 5s
	Children         int           // php-fpm workers; default 4
	TerminateTimeout time.Duration // php-fpm request_terminate_timeout; default 10s
	Log              io.Writer     // progress lines; nil = none
	// Push runs `bitville-apm pushgw` too: the agent pushes its /metrics
	// to it every ScrapeInterval and Prometheus scrapes the gateway
	// (honor_labels) instead of the agent.
	Push bool

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
	PushgwURL     string // http://127.0.0.1:port of pushgw; "" without Options.Push
	PartnerAddr   string // 127.0.0.1:port of the shop's slow partner service

	opts    Options
	daemon  []*daemon
	partner *partner
	hogs    hogs
	client  http.Client
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
	sessions := filepath.Join(o.Dir, "sessions")
	if err := os.MkdirAll(sessions, 0o700); err != nil {
		return s, err
	}
	if s.partner, err = startPartner(partnerDelay); err != nil {
		return s, err
	}
	s.PartnerAddr = s.partner.Addr()
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
		Env: overlay(map[string]string{
			"APP_SLOW_SQL_SECONDS": "1",
			"APP_PRICING_ROUNDS":   "30000",
			"APP_CART_HOLD_MS":     fmt.Sprint(cartHold.Milliseconds()),
			"APP_PARTNER_ADDR":     s.PartnerAddr,
		}, o.AppEnv),
		INI:              map[string]string{"session.save_path": sessions},
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
	agentArgs := []string{"agent", "--agent.socket=" + socket, "--web.listen-address=" + agentAddr,
		"--fpm.status-uri=" + s.Shop.FPM.StatusURI(), "--fpm.slowlog=" + s.Shop.FPM.SlowlogPath,
		"--agent.long-request-threshold=" + o.LongRequestThreshold.String(), "--agent.min-queue-length=0"}
	var pushgwAddr string
	if o.Push {
		files, err := writePushFiles(o.Dir)
		if err != nil {
			return s, err
		}
		if pushgwAddr, err = freeAddr(); err != nil {
			return s, err
		}
		s.logf("starting pushgw; the agent pushes to it every %s", o.ScrapeInterval)
		if err := s.startDaemon(ctx, "pushgw", pushgwAddr, pushgwArgs(o.Dir, pushgwAddr, files)...); err != nil {
			return s, err
		}
		s.PushgwURL = "http://" + pushgwAddr
		push, err := agentPushArgs(o, s.PushgwURL, agentAddr, files)
		if err != nil {
			return s, err
		}
		agentArgs = append(agentArgs, push...)
	}
	if err := s.startDaemon(ctx, "agent", agentAddr, agentArgs...); err != nil {
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
	s.Prometheus, err = stack.StartPrometheus(ctx, stack.PrometheusConfig{
		Dir:            filepath.Join(o.Dir, "prometheus"),
		ScrapeInterval: o.ScrapeInterval,
		RuleFiles:      rules,
		// The job names the rules select.
		Jobs: scrapeJobs(mixin.DefaultConfig(), s.Node.Addr, agentAddr, pgAddr, pushgwAddr),
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
	s.hogs.killAll()
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
	if s.partner != nil {
		errs = append(errs, s.partner.Close())
	}
	return errors.Join(errs...)
}
