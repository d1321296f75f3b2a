package stack

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// VictoriaMetricsConfig describes a throwaway single-node VictoriaMetrics
// (Debian's victoria-metrics), a remote-write receiver for pushgw's tests.
type VictoriaMetricsConfig struct {
	Dir    string // data and log (created)
	Port   int    // TCP port on 127.0.0.1; 0 picks a free one
	Binary string // default: victoria-metrics on PATH or /usr/bin
}

// VictoriaMetrics is a running VictoriaMetrics.
type VictoriaMetrics struct {
	Port int
	Log  string

	url  string
	proc *process
}

// StartVictoriaMetrics starts VictoriaMetrics with its data in c.Dir and
// returns once /health answers; ctx bounds only that wait.
func StartVictoriaMetrics(ctx context.Context, c VictoriaMetricsConfig) (*VictoriaMetrics, error) {
	if c.Dir == "" {
		return nil, fmt.Errorf("cannot start VictoriaMetrics: VictoriaMetricsConfig.Dir is empty")
	}
	if c.Binary == "" {
		bin, err := findBinary("victoria-metrics", []string{"/usr/bin"}, "victoria-metrics", "victoria-metrics-prod")
		if err != nil {
			return nil, fmt.Errorf("cannot start VictoriaMetrics: %w", err)
		}
		c.Binary = bin
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("cannot start VictoriaMetrics: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("cannot start VictoriaMetrics: %w", err)
	}
	v := &VictoriaMetrics{Log: filepath.Join(dir, "victoria-metrics.log")}
	if err := onFreePort(c.Port, "VictoriaMetrics", "address already in use", func(port int) error { return v.start(ctx, c.Binary, dir, port) }); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *VictoriaMetrics) start(ctx context.Context, bin, dir string, port int) error {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// A test queries what it wrote a moment ago: without the latency
	// offset (30s by default) and the response cache, a sample is found
	// as soon as VictoriaMetrics has made it searchable (about a second).
	// One day is the shortest retention it takes.
	cmd := exec.Command(bin, "-storageDataPath="+filepath.Join(dir, "data"), "-httpListenAddr="+addr,
		"-retentionPeriod=1d", "-search.latencyOffset=0s", "-search.disableCache", "-loggerLevel=WARN")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	proc, err := startProcess("victoria-metrics", cmd, v.Log)
	if err != nil {
		return err
	}
	v.proc, v.Port, v.url = proc, port, "http://"+addr
	health := &http.Client{Timeout: time.Second}
	err = proc.waitReady(ctx, v.Log, func() error {
		resp, err := health.Get(v.url + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/health: HTTP %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		_ = proc.stop(syscall.SIGTERM, 5*time.Second)
		return err
	}
	return nil
}

// URL is VictoriaMetrics' base URL, http://127.0.0.1:port; its Prometheus
// query API is under /api/v1/ (promapi.New takes it).
func (v *VictoriaMetrics) URL() string { return v.url }

// RemoteWriteURL is its Prometheus remote-write endpoint.
func (v *VictoriaMetrics) RemoteWriteURL() string { return v.url + "/api/v1/write" }

// PID returns VictoriaMetrics' process id.
func (v *VictoriaMetrics) PID() int { return v.proc.cmd.Process.Pid }

// Stop ends VictoriaMetrics (SIGTERM, up to 10 seconds).
func (v *VictoriaMetrics) Stop() error {
	if v == nil || v.proc == nil {
		return nil
	}
	return v.proc.stop(syscall.SIGTERM, 10*time.Second)
}
