package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/stack"
	"github.com/bitville/bitville-apm/internal/web/webtest"
)

// authGet requests url with basic auth (none when user is "") and returns
// the status and body.
func authGet(t *testing.T, c *http.Client, url, user, password string) (int, string) {
	t.Helper()
	code, body, _, err := webtest.Get(c, url, user, password)
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

// checkWebSecurity checks a daemon started with f's web configuration:
// a verified TLS handshake, plain HTTP refused, and on each path 401
// without a password or with a wrong one and 200 with the right one, the
// 200 body containing want[path].
func checkWebSecurity(t *testing.T, p *agentProcess, f webtest.Files, want map[string]string) {
	t.Helper()
	addr := strings.TrimPrefix(p.base, "https://")
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: f.Roots, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS handshake with the test CA: %v", err)
	}
	if st := conn.ConnectionState(); len(st.VerifiedChains) == 0 {
		t.Errorf("TLS handshake: no verified chain")
	}
	conn.Close()

	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + addr + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(b), "bitville_") {
			t.Errorf("plain HTTP to the TLS port: got %d %.80q; want 400 and no metrics", resp.StatusCode, b)
		}
	}

	c := f.Client(10 * time.Second)
	for path, body := range want {
		for _, tc := range []struct {
			name, user, password string
			want                 int
		}{
			{"no password", "", "", http.StatusUnauthorized},
			{"wrong password", f.User, f.Password + "x", http.StatusUnauthorized},
			{"right password", f.User, f.Password, http.StatusOK},
		} {
			code, got := authGet(t, c, p.base+path, tc.user, tc.password)
			if code != tc.want {
				t.Errorf("%s with %s: got status %d; want %d", path, tc.name, code, tc.want)
				continue
			}
			if has := strings.Contains(got, body); has != (code == http.StatusOK) {
				t.Errorf("%s with %s: body contains %q: %v; want %v", path, tc.name, body, has, code == http.StatusOK)
			}
		}
	}
}

// TestAgentWebConfig runs the agent behind TLS and basic auth
// (--web.config.file): what /api/v1/inflight shows (paths, correlation ids)
// is only given to a client with the password, over a verified TLS
// connection; an invalid file stops the agent before it opens its socket.
func TestAgentWebConfig(t *testing.T) {
	bin := buildBinary(t)
	f, err := webtest.Write(t.TempDir(), "prometheus", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "agent.sock")
	p := launchDaemon(t, exec.Command(bin, "--log.format=json", "agent", "--agent.socket="+socket, "--web.listen-address=127.0.0.1:0",
		"--agent.min-queue-length=0", "--no-agent.check-pids", "--web.config.file="+f.ConfigFile), socket, "https")
	c := f.Client(5 * time.Second)
	waitFor(t, 10*time.Second, func() bool {
		code, _ := authGet(t, c, p.base+"/readyz", f.User, f.Password)
		return code == http.StatusOK
	})
	p.send(t, readGolden(t, "start.json"))
	waitFor(t, 5*time.Second, func() bool {
		_, body := authGet(t, c, p.base+"/api/v1/inflight", f.User, f.Password)
		return strings.Contains(body, "0af7651916cd43dd8448eb211c80319c")
	})
	checkWebSecurity(t, p, f, map[string]string{
		"/metrics":         "bitville_agent_build_info",
		"/api/v1/inflight": "0af7651916cd43dd8448eb211c80319c",
		"/api/v1/events":   `"events"`,
		"/healthz":         "ok",
	})
	stopDaemon(t, p)

	t.Run("invalid file", func(t *testing.T) {
		dir := t.TempDir()
		for _, tc := range []struct{ name, content, want string }{
			{"password in clear", "basic_auth_users:\n  prometheus: correct horse\n", "must be a bcrypt hash"},
			{"missing key file", "tls_server_config:\n  cert_file: " + f.Cert + "\n  key_file: " + filepath.Join(dir, "nokey.pem") + "\n", "nokey.pem"},
			{"unknown key", "tls_config:\n  cert_file: x\n", "tls_config"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yml")
				if err := os.WriteFile(cfg, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
				sockDir := filepath.Join(dir, "run-"+strings.ReplaceAll(tc.name, " ", "-"))
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				out, err := exec.CommandContext(ctx, bin, "agent", "--agent.socket="+filepath.Join(sockDir, "agent.sock"), "--web.listen-address=127.0.0.1:0",
					"--agent.min-queue-length=0", "--web.config.file="+cfg).CombinedOutput()
				if err == nil {
					t.Fatalf("the agent started with %s; want an error", tc.name)
				}
				if !strings.Contains(string(out), "invalid web.config.file "+cfg) || !strings.Contains(string(out), tc.want) {
					t.Errorf("got %s; want an error naming the file and %q", out, tc.want)
				}
				// The socket's directory is made when the socket is opened.
				if _, err := os.Stat(sockDir); !os.IsNotExist(err) {
					t.Errorf("socket directory %s exists (%v); the agent must fail before it opens the socket", sockDir, err)
				}
			})
		}
	})
}

// TestPgExporterWebConfig runs the pg-exporter behind TLS and basic auth
// given in the environment (BITVILLE_WEB_CONFIG_FILE), against a
// throwaway PostgreSQL.
func TestPgExporterWebConfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := stack.StartPostgres(ctx, stack.PostgresConfig{Dir: filepath.Join(t.TempDir(), "pg")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	bin := buildBinary(t)
	f, err := webtest.Write(t.TempDir(), "prometheus", "correct horse")
	if err != nil {
		t.Fatal(err)
	}

	bad := filepath.Join(t.TempDir(), "bad.yml")
	if err := os.WriteFile(bad, []byte("basic_auth_users:\n  prometheus: correct horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, bin, "pg-exporter", "--pg.dsn="+pg.DSN("postgres"), "--web.listen-address=127.0.0.1:0", "--web.config.file="+bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "invalid web.config.file "+bad) {
		t.Errorf("got %v, %s; want the pg-exporter to refuse the file", err, out)
	}

	cmd := exec.Command(bin, "--log.format=json", "pg-exporter", "--pg.dsn="+pg.DSN("postgres"), "--web.listen-address=127.0.0.1:0")
	cmd.Env = append(os.Environ(), "BITVILLE_WEB_CONFIG_FILE="+f.ConfigFile)
	p := launchDaemon(t, cmd, "", "https")
	c := f.Client(10 * time.Second)
	waitFor(t, 10*time.Second, func() bool {
		code, _ := authGet(t, c, p.base+"/readyz", f.User, f.Password)
		return code == http.StatusOK
	})
	checkWebSecurity(t, p, f, map[string]string{
		"/metrics":      `bitville_pg_up{server="127.0.0.1:`,
		"/api/v1/locks": "[",
		"/readyz":       "ok",
		"/":             "pg-exporter",
	})
	stopDaemon(t, p)
}
