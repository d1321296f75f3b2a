package stack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// ScrapeJob is one scrape job of a throwaway Prometheus.
type ScrapeJob struct {
	Name    string
	Targets []string // host:port
	// HonorLabels keeps the job and instance labels the target exposes
	// (a push gateway's pushed series) over the scrape's own.
	HonorLabels bool
}

// PrometheusConfig describes a throwaway Prometheus (Debian's package).
type PrometheusConfig struct {
	Dir            string        // configuration, TSDB and log (created)
	Jobs           []ScrapeJob   // scraped at ScrapeInterval
	RuleFiles      []string      // rule files to load (absolute, or relative to the working directory)
	ScrapeInterval time.Duration // default 15s; also the rule evaluation interval
	Port           int           // TCP port on 127.0.0.1; 0 picks a free one
	Binary         string        // default: prometheus on PATH or /usr/bin
	// RemoteWriteReceiver turns on its remote-write endpoint,
	// RemoteWriteURL().
	RemoteWriteReceiver bool
}

// Prometheus is a running Prometheus.
type Prometheus struct {
	URL    string // http://127.0.0.1:port
	Port   int
	Log    string
	Config string // the configuration file written

	proc *process
}

// promConfig is the configuration file: every job's targets, with
// instance set to the target's host without the port, so that
// node_exporter, the agent and the pg-exporter on one host share the
// instance label the alerts and dashboards join on.
func promConfig(c PrometheusConfig, rules []string) ([]byte, error) {
	type relabel struct {
		SourceLabels []string `yaml:"source_labels"`
		Regex        string   `yaml:"regex"`
		TargetLabel  string   `yaml:"target_label"`
		Replacement  string   `yaml:"replacement"`
	}
	type static struct {
		Targets []string `yaml:"targets"`
	}
	type job struct {
		JobName        string    `yaml:"job_name"`
		HonorLabels    bool      `yaml:"honor_labels,omitempty"`
		StaticConfigs  []static  `yaml:"static_configs"`
		RelabelConfigs []relabel `yaml:"relabel_configs"`
	}
	iv := c.ScrapeInterval.String()
	doc := struct {
		Global struct {
			ScrapeInterval     string `yaml:"scrape_interval"`
			ScrapeTimeout      string `yaml:"scrape_timeout"`
			EvaluationInterval string `yaml:"evaluation_interval"`
		} `yaml:"global"`
		RuleFiles     []string `yaml:"rule_files,omitempty"`
		ScrapeConfigs []job    `yaml:"scrape_configs"`
	}{RuleFiles: rules}
	doc.Global.ScrapeInterval, doc.Global.EvaluationInterval = iv, iv
	doc.Global.ScrapeTimeout = min(c.ScrapeInterval, 10*time.Second).String()
	for _, j := range c.Jobs {
		doc.ScrapeConfigs = append(doc.ScrapeConfigs, job{
			JobName:        j.Name,
			HonorLabels:    j.HonorLabels,
			StaticConfigs:  []static{{Targets: j.Targets}},
			RelabelConfigs: []relabel{{SourceLabels: []string{"__address__"}, Regex: `(.+):\d+`, TargetLabel: "instance", Replacement: "$1"}},
		})
	}
	return yaml.Marshal(doc)
}

// StartPrometheus writes a configuration into c.Dir and starts Prometheus
// on it with its TSDB in c.Dir. It returns once /-/ready answers; ctx
// bounds only that wait.
func StartPrometheus(ctx context.Context, c PrometheusConfig) (*Prometheus, error) {
	if c.ScrapeInterval <= 0 {
		c.ScrapeInterval = 15 * time.Second
	}
	dir, err := preparePeer("Prometheus", "PrometheusConfig.Dir", c.Dir, "data", &c.Binary, func() (string, error) {
		return findBinary("prometheus", []string{"/usr/bin"}, "prometheus")
	})
	if err != nil {
		return nil, err
	}
	var rules []string
	for _, r := range c.RuleFiles {
		abs, err := filepath.Abs(r)
		if err != nil {
			return nil, fmt.Errorf("cannot start Prometheus: %w", err)
		}
		rules = append(rules, abs)
	}
	conf, err := promConfig(c, rules)
	if err != nil {
		return nil, fmt.Errorf("cannot start Prometheus: %w", err)
	}
	p := &Prometheus{Log: filepath.Join(dir, "prometheus.log"), Config: filepath.Join(dir, "prometheus.yml")}
	if err := os.WriteFile(p.Config, conf, 0o644); err != nil {
		return nil, fmt.Errorf("cannot start Prometheus: %w", err)
	}
	if err := onFreePort(c.Port, "Prometheus", "address already in use", func(port int) error { return p.start(ctx, c, dir, port) }); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Prometheus) start(ctx context.Context, c PrometheusConfig, dir string, port int) error {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"--config.file=" + p.Config, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr, "--storage.tsdb.retention.time=1d", "--log.level=warn"}
	if c.RemoteWriteReceiver {
		args = append(args, "--web.enable-remote-write-receiver") // Prometheus 2.33 and later
	}
	proc, err := startHTTPPeer(ctx, "prometheus", peerCommand(dir, c.Binary, args...), p.Log, "http://"+addr+"/-/ready")
	if err != nil {
		return err
	}
	p.proc, p.Port, p.URL = proc, port, "http://"+addr
	return nil
}

// RemoteWriteURL is the endpoint of its remote-write receiver (on with
// PrometheusConfig.RemoteWriteReceiver).
func (p *Prometheus) RemoteWriteURL() string { return p.URL + "/api/v1/write" }

// PID returns Prometheus's process id.
func (p *Prometheus) PID() int { return p.proc.cmd.Process.Pid }

// Stop ends Prometheus (SIGTERM, up to 10 seconds).
func (p *Prometheus) Stop() error {
	if p == nil || p.proc == nil {
		return nil
	}
	return p.proc.stop(syscall.SIGTERM, 10*time.Second)
}

// NodeExporterConfig describes a node_exporter (Debian's
// prometheus-node-exporter).
type NodeExporterConfig struct {
	Dir        string   // its log (created)
	Collectors []string // only these collectors (e.g. cpu, loadavg, stat); nil = its defaults
	Port       int      // TCP port on 127.0.0.1; 0 picks a free one
	Binary     string   // default: prometheus-node-exporter on PATH or /usr/bin
}

// NodeExporter is a running node_exporter.
type NodeExporter struct {
	Addr string // 127.0.0.1:port
	Log  string

	proc *process
}

// StartNodeExporter starts node_exporter and returns once it answers.
func StartNodeExporter(ctx context.Context, c NodeExporterConfig) (*NodeExporter, error) {
	if c.Dir == "" {
		return nil, fmt.Errorf("cannot start node_exporter: NodeExporterConfig.Dir is empty")
	}
	if c.Binary == "" {
		bin, err := findBinary("prometheus-node-exporter", []string{"/usr/bin"}, "prometheus-node-exporter", "node_exporter")
		if err != nil {
			return nil, fmt.Errorf("cannot start node_exporter: %w", err)
		}
		c.Binary = bin
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot start node_exporter: %w", err)
	}
	n := &NodeExporter{Log: filepath.Join(c.Dir, "node_exporter.log")}
	err := onFreePort(c.Port, "node_exporter", "address already in use", func(port int) error {
		n.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		args := []string{"--web.listen-address=" + n.Addr}
		if c.Collectors != nil {
			args = append(args, "--collector.disable-defaults")
			for _, col := range c.Collectors {
				args = append(args, "--collector."+col)
			}
		}
		cmd := exec.Command(c.Binary, args...)
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
		var err error
		if n.proc, err = startProcess("node_exporter", cmd, n.Log); err != nil {
			return err
		}
		if err := n.proc.waitReady(ctx, n.Log, func() error { return dialTCP(n.Addr) }); err != nil {
			_ = n.proc.stop(syscall.SIGTERM, 5*time.Second)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

// Stop ends node_exporter.
func (n *NodeExporter) Stop() error {
	if n == nil || n.proc == nil {
		return nil
	}
	return n.proc.stop(syscall.SIGTERM, 5*time.Second)
}
