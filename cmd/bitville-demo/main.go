// Command bitville-demo runs the whole Bitville APM stack on this machine
// with the example shop, makes a baseline and a load spike with one known
// culprit, prints `bitville-apm top`'s report of the spike, and leaves the
// stack running with its URLs until Ctrl-C. `make demo` runs it:
//
//	make demo                     # SCENARIO=cpu
//	make demo SCENARIO=locks      # cpu, slow-sql, locks, stuck, session, partner, process or cron
//	make demo PUSH=1              # the agent pushes through bitville-apm pushgw (--push)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bitville/bitville-apm/internal/demo"
	"github.com/bitville/bitville-apm/internal/promapi"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	var names []string
	for _, s := range demo.Scenarios {
		names = append(names, s.Name)
	}
	scenario := flag.String("scenario", "cpu", "the spike: "+strings.Join(names, ", "))
	bin := flag.String("bin", "bin/bitville-apm", "the bitville-apm binary (make build)")
	dir := flag.String("dir", "", "where the stack keeps its data and logs (default: a new temporary directory, removed at the end)")
	baseline := flag.Duration("baseline", 40*time.Second, "how long the light baseline traffic runs before the spike")
	spike := flag.Duration("spike", 40*time.Second, "how long the spike runs")
	scrape := flag.Duration("scrape-interval", 5*time.Second, "Prometheus's scrape and rule evaluation interval")
	children := flag.Int("children", 4, "php-fpm workers")
	push := flag.Bool("push", false, "run bitville-apm pushgw too: the agent pushes its metrics to it every scrape interval, and Prometheus scrapes the gateway (honor_labels) instead of the agent")
	flag.Parse()

	sc, err := demo.ScenarioByName(*scenario)
	if err != nil {
		return err
	}
	binary, err := filepath.Abs(*bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(binary); err != nil {
		return fmt.Errorf("%s not found: build it first (make build): %w", *bin, err)
	}
	if out, err := exec.Command("php", "-m").Output(); err != nil || !strings.Contains(string(out), "excimer") {
		return fmt.Errorf("PHP with the excimer extension is needed (Debian packages php8.2-cli, php8.2-fpm, php-excimer; `make deps` installs them as root)")
	}
	workDir := *dir
	if workDir == "" {
		if workDir, err = os.MkdirTemp("", "bitville-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(workDir)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	say := func(format string, args ...any) { fmt.Printf("demo: "+format+"\n", args...) }
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	s, err := demo.Start(startCtx, demo.Options{Dir: workDir, Binary: binary, ScrapeInterval: *scrape, Children: *children, Push: *push, Log: logWriter{}})
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		say("stopping every process the demo started")
		if err := s.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
		}
	}()
	urls := func() {
		say("the stack (data and logs in %s):", workDir)
		fmt.Printf("  shop          %s  (try %s/report, %s/orders/7)\n", s.Shop.URL, s.Shop.URL, s.Shop.URL)
		fmt.Printf("  agent         %s/metrics   %s/api/v1/inflight\n", s.AgentURL, s.AgentURL)
		fmt.Printf("  pg-exporter   %s/metrics   %s/api/v1/locks\n", s.PgExporterURL, s.PgExporterURL)
		if s.PushgwURL != "" {
			fmt.Printf("  pushgw        %s/metrics   (the agent pushes here; Prometheus scrapes it, not the agent)\n", s.PushgwURL)
		}
		fmt.Printf("  node_exporter http://%s/metrics\n", s.Node.Addr)
		fmt.Printf("  Prometheus    %s  (alerts: %s/alerts)\n", s.Prometheus.URL, s.Prometheus.URL)
		fmt.Printf("  PostgreSQL    %s\n", s.Shop.PG.DSN(s.Shop.DB))
		fmt.Printf("  partner       %s  (the shop's slow partner service, GET %s/partner/quote)\n", s.PartnerAddr, s.Shop.URL)
	}
	urls()

	// Enough scrapes for rates before the baseline counts. A push reaches
	// Prometheus up to one push interval (= the scrape interval) later
	// than a scrape of the agent would.
	settle := *scrape
	if *push {
		settle += *scrape
	}
	if !sleep(ctx, *scrape+settle) {
		return nil
	}
	base := time.Now()
	s.Baseline(ctx, *baseline)
	from := time.Now()
	if ctx.Err() == nil {
		if err := s.Spike(ctx, sc, *spike); err != nil {
			return err
		}
	}
	to := time.Now()
	if ctx.Err() != nil {
		return nil
	}
	say("waiting %s for the last scrapes of the spike", settle+time.Second)
	sleep(ctx, settle+time.Second)

	args := []string{"top", "--prometheus.url=" + s.Prometheus.URL, fmt.Sprintf("--from=%d", from.Unix()), fmt.Sprintf("--to=%d", to.Unix()),
		"--baseline=" + from.Sub(base).Round(time.Second).String()}
	say("the offenders report: %s %s\n", filepath.Base(binary), strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo: top:", err)
	}
	fmt.Printf("\ndemo: the culprit of %q: %s.\n", sc.Name, sc.Description)
	printAlerts(ctx, s.Prometheus.URL)

	fmt.Println()
	urls()
	say("light traffic goes on so the dashboards have data; Ctrl-C stops everything")
	for ctx.Err() == nil {
		s.Baseline(ctx, time.Minute)
	}
	return nil
}

// printAlerts lists the alerts pending or firing in Prometheus.
func printAlerts(ctx context.Context, url string) {
	c, err := promapi.New(url)
	if err != nil {
		return
	}
	alerts, err := c.Alerts(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo: alerts:", err)
		return
	}
	if len(alerts) == 0 {
		fmt.Println("demo: no alert is pending or firing yet (BitvilleLoadSpike waits for 2 minutes above 2 per core).")
		return
	}
	fmt.Println("demo: alerts pending or firing:")
	for _, a := range alerts {
		fmt.Printf("  %-8s %s: %s\n", a.State, a.Labels["alertname"], a.Annotations["summary"])
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

type logWriter struct{}

func (logWriter) Write(p []byte) (int, error) {
	fmt.Print("demo: " + string(p))
	return len(p), nil
}
