package fastcgi

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/stack"
)

// startFPM starts a real php-fpm pool for the test and stops it at the end.
func startFPM(t *testing.T) *stack.FPM {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f, err := stack.StartFPM(ctx, stack.FPMConfig{Dir: t.TempDir(), Children: 2})
	if err != nil {
		t.Fatalf("cannot start php-fpm: %v", err)
	}
	t.Cleanup(func() { _ = f.Stop() })
	return f
}

// tcpProxy forwards a loopback TCP port to a unix socket, so the TCP path of
// the client talks to the real php-fpm too.
func tcpProxy(t *testing.T, unixPath string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("unix", unixPath)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(u, c); u.(*net.UnixConn).CloseWrite() }()
			go func() { defer wg.Done(); _, _ = io.Copy(c, u); c.Close(); u.Close() }()
		}
	}()
	return ln.Addr().String()
}

func statusParams(path, query string) map[string]string {
	return map[string]string{
		"GATEWAY_INTERFACE": "FastCGI/1.0",
		"REQUEST_METHOD":    "GET",
		"SCRIPT_NAME":       path,
		"SCRIPT_FILENAME":   path,
		"REQUEST_URI":       path + "?" + query,
		"QUERY_STRING":      query,
		"SERVER_SOFTWARE":   "bitville-apm-test",
		"REMOTE_ADDR":       "127.0.0.1",
	}
}

func TestRealFPM(t *testing.T) {
	f := startFPM(t)
	script := filepath.Join(t.TempDir(), "hello.php")
	if err := os.WriteFile(script, []byte("<?php\nheader('X-Test: yes');\nhttp_response_code(418);\necho 'hello ', $_GET['who'] ?? '';\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	clients := map[string]*Client{
		"unix": {Network: "unix", Address: f.Socket},
		"tcp":  {Network: "tcp", Address: tcpProxy(t, f.Socket)},
	}
	for name, c := range clients {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			r, err := c.Do(ctx, statusParams(f.StatusPath, "json&full"))
			if err != nil {
				t.Fatalf("status page: %v", err)
			}
			var st struct {
				Pool      string           `json:"pool"`
				Total     int              `json:"total processes"`
				Processes []map[string]any `json:"processes"`
			}
			if r.Status != 200 || r.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status page: got %d %v; want 200 application/json", r.Status, r.Header)
			}
			if err := json.Unmarshal(r.Body, &st); err != nil {
				t.Fatalf("status page is not JSON: %v\n%s", err, r.Body)
			}
			// Right after the start php-fpm may not count every child in
			// "total processes" yet; the list has them all.
			if st.Pool != f.Pool || st.Total < 1 || len(st.Processes) != 2 {
				t.Errorf("got pool %q with %d processes (%d listed); want %q with 2 listed", st.Pool, st.Total, len(st.Processes), f.Pool)
			}

			r, err = c.Do(ctx, statusParams("/ping", ""))
			if err != nil || r.Status != 200 || string(r.Body) != "pong" {
				t.Errorf("ping: got %+v, %v; want 200 pong", r, err)
			}

			r, err = c.Do(ctx, statusParams("/nowhere.php", ""))
			if err != nil || r.Status != 404 || !strings.Contains(string(r.Stderr), "Primary script unknown") {
				t.Errorf("missing script: got %+v, %v; want 404 with php-fpm's stderr", r, err)
			}

			p := statusParams(script, "who=fpm")
			r, err = c.Do(ctx, p)
			if err != nil || r.Status != 418 || r.Header.Get("X-Test") != "yes" || string(r.Body) != "hello fpm" {
				t.Errorf("script: got %+v, %v; want 418, X-Test and hello fpm", r, err)
			}
		})
	}
}
