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

// preparePeer does what the Start functions of the HTTP peers
// (Pushgateway, VictoriaMetrics, VictoriaLogs, Prometheus) do first: it
// refuses an empty dir (field names it in the error), finds the binary
// with find when *bin is "", and returns dir made absolute with dir/sub
// created (dir itself when sub is ""). Errors read "cannot start name: ...".
func preparePeer(name, field, dir, sub string, bin *string, find func() (string, error)) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("cannot start %s: %s is empty", name, field)
	}
	if *bin == "" {
		b, err := find()
		if err != nil {
			return "", fmt.Errorf("cannot start %s: %w", name, err)
		}
		*bin = b
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("cannot start %s: %w", name, err)
	}
	if err := os.MkdirAll(filepath.Join(abs, sub), 0o755); err != nil {
		return "", fmt.Errorf("cannot start %s: %w", name, err)
	}
	return abs, nil
}

// peerCommand runs bin with args in dir, with a PATH of the usual binary
// directories and no other environment.
func peerCommand(dir, bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	return cmd
}

// startHTTPPeer starts cmd (see startProcess) and returns once a GET of
// healthURL answers 200 OK; ctx bounds only that wait. When the peer does
// not become ready it is stopped and the error quotes the tail of log.
func startHTTPPeer(ctx context.Context, name string, cmd *exec.Cmd, log, healthURL string) (*process, error) {
	proc, err := startProcess(name, cmd, log)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: time.Second}
	err = proc.waitReady(ctx, log, func() error {
		resp, err := client.Get(healthURL)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: HTTP %d", healthURL, resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		_ = proc.stop(syscall.SIGTERM, 5*time.Second)
		return nil, err
	}
	return proc, nil
}
