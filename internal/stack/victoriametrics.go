package stack

import (
	"context"
	"fmt"
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
	dir, err := preparePeer("VictoriaMetrics", "VictoriaMetricsConfig.Dir", c.Dir, "data", &c.Binary, func() (string, error) {
		return findBinary("victoria-metrics", []string{"/usr/bin"}, "victoria-metrics", "victoria-metrics-prod")
	})
	if err != nil {
		return nil, err
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
	cmd := peerCommand(dir, bin, "-storageDataPath="+filepath.Join(dir, "data"), "-httpListenAddr="+addr,
		"-retentionPeriod=1d", "-search.latencyOffset=0s", "-search.disableCache", "-loggerLevel=WARN")
	proc, err := startHTTPPeer(ctx, "victoria-metrics", cmd, v.Log, "http://"+addr+"/health")
	if err != nil {
		return err
	}
	v.proc, v.Port, v.url = proc, port, "http://"+addr
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
