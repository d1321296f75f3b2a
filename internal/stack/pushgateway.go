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

// PushgatewayConfig describes a throwaway Prometheus Pushgateway (Debian's
// prometheus-pushgateway), the yardstick pushgw is measured against.
type PushgatewayConfig struct {
	Dir    string // log and persistence file (created)
	Port   int    // TCP port on 127.0.0.1; 0 picks a free one
	Binary string // default: prometheus-pushgateway on PATH or /usr/bin
}

// Pushgateway is a running Pushgateway.
type Pushgateway struct {
	URL  string // http://127.0.0.1:port; pushes go to URL+"/metrics/job/<job>"
	Port int
	Log  string

	proc *process
}

// StartPushgateway starts the Pushgateway and returns once /-/ready
// answers; ctx bounds only that wait.
func StartPushgateway(ctx context.Context, c PushgatewayConfig) (*Pushgateway, error) {
	if c.Dir == "" {
		return nil, fmt.Errorf("cannot start the Pushgateway: PushgatewayConfig.Dir is empty")
	}
	if c.Binary == "" {
		bin, err := findBinary("prometheus-pushgateway", []string{"/usr/bin"}, "prometheus-pushgateway", "pushgateway")
		if err != nil {
			return nil, fmt.Errorf("cannot start the Pushgateway: %w", err)
		}
		c.Binary = bin
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("cannot start the Pushgateway: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot start the Pushgateway: %w", err)
	}
	g := &Pushgateway{Log: filepath.Join(dir, "pushgateway.log")}
	if err := onFreePort(c.Port, "the Pushgateway", "address already in use", func(port int) error { return g.start(ctx, c.Binary, dir, port) }); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *Pushgateway) start(ctx context.Context, bin, dir string, port int) error {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// Debian's default persistence file is under /var/lib; keep it in
	// dir.
	cmd := exec.Command(bin, "--web.listen-address="+addr,
		"--persistence.file="+filepath.Join(dir, "pushgateway.data"), "--log.level=warn")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	proc, err := startProcess("pushgateway", cmd, g.Log)
	if err != nil {
		return err
	}
	g.proc, g.Port, g.URL = proc, port, "http://"+addr
	client := &http.Client{Timeout: time.Second}
	err = proc.waitReady(ctx, g.Log, func() error {
		resp, err := client.Get(g.URL + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: HTTP %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		_ = proc.stop(syscall.SIGTERM, 5*time.Second)
		return err
	}
	return nil
}

// PID returns the Pushgateway's process id.
func (g *Pushgateway) PID() int { return g.proc.cmd.Process.Pid }

// Stop ends the Pushgateway (SIGTERM, up to 10 seconds).
func (g *Pushgateway) Stop() error {
	if g == nil || g.proc == nil {
		return nil
	}
	return g.proc.stop(syscall.SIGTERM, 10*time.Second)
}
