package stack

import (
	"context"
	"fmt"
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
	dir, err := preparePeer("the Pushgateway", "PushgatewayConfig.Dir", c.Dir, "", &c.Binary, func() (string, error) {
		return findBinary("prometheus-pushgateway", []string{"/usr/bin"}, "prometheus-pushgateway", "pushgateway")
	})
	if err != nil {
		return nil, err
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
	cmd := peerCommand(dir, bin, "--web.listen-address="+addr,
		"--persistence.file="+filepath.Join(dir, "pushgateway.data"), "--log.level=warn")
	proc, err := startHTTPPeer(ctx, "pushgateway", cmd, g.Log, "http://"+addr+"/-/ready")
	if err != nil {
		return err
	}
	g.proc, g.Port, g.URL = proc, port, "http://"+addr
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
