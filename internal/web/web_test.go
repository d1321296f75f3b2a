package web

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/bitville/bitville-apm/internal/web/webtest"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })

// start serves h on 127.0.0.1 with configFile and stops the server when
// the test ends, checking that Serve returned nil.
func start(t *testing.T, configFile string, h http.Handler) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", configFile, h, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve returned %v; want nil after shutdown", err)
		}
	})
	return s
}

func get(t *testing.T, c *http.Client, url, user, password string) (int, string, http.Header) {
	t.Helper()
	code, body, header, err := webtest.Get(c, url, user, password)
	if err != nil {
		t.Fatal(err)
	}
	return code, body, header
}

func TestServeTLSAndBasicAuth(t *testing.T) {
	f, err := webtest.Write(t.TempDir(), "prometheus", "s3cret pass")
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, f.ConfigFile, okHandler)
	addr := s.Addr().String()

	t.Run("handshake with the CA", func(t *testing.T) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: f.Roots, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		defer conn.Close()
		st := conn.ConnectionState()
		if !st.HandshakeComplete || len(st.VerifiedChains) == 0 {
			t.Errorf("got handshake complete %v with %d verified chains; want a verified handshake", st.HandshakeComplete, len(st.VerifiedChains))
		}
		if st.Version < tls.VersionTLS12 {
			t.Errorf("got TLS version %x; want at least 1.2", st.Version)
		}
	})
	t.Run("handshake without the CA", func(t *testing.T) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{MinVersion: tls.VersionTLS12})
		var unknown x509.UnknownAuthorityError
		if err == nil {
			conn.Close()
		}
		if !errors.As(err, &unknown) {
			t.Errorf("got %v; want an unknown authority error", err)
		}
	})
	t.Run("plain HTTP", func(t *testing.T) {
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			return // refused outright: fine
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		// Go's TLS server answers a plain request with 400 and closes.
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(b), "ok") {
			t.Errorf("plain HTTP to the TLS port: got %d %q; want 400 without the handler", resp.StatusCode, b)
		}
	})

	c := f.Client(5 * time.Second)
	for _, tc := range []struct {
		name, user, password string
		want                 int
	}{
		{"no credentials", "", "", http.StatusUnauthorized},
		{"wrong password", "prometheus", "s3cret", http.StatusUnauthorized},
		{"unknown user", "grafana", "s3cret pass", http.StatusUnauthorized},
		{"empty password", "prometheus", "", http.StatusUnauthorized},
		{"right password", "prometheus", "s3cret pass", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, h := get(t, c, "https://"+addr+"/", tc.user, tc.password)
			if code != tc.want {
				t.Fatalf("got status %d; want %d", code, tc.want)
			}
			switch code {
			case http.StatusOK:
				if body != "ok\n" {
					t.Errorf("got body %q; want the handler's", body)
				}
			case http.StatusUnauthorized:
				if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic") {
					t.Errorf("got WWW-Authenticate %q; want Basic", h.Get("WWW-Authenticate"))
				}
				if strings.Contains(body, "ok") {
					t.Errorf("got body %q; the handler must not run", body)
				}
			}
		})
	}
}

// The file is read again per request: a new password applies at once.
func TestPasswordChangeWithoutRestart(t *testing.T) {
	f, err := webtest.Write(t.TempDir(), "prometheus", "old")
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, f.ConfigFile, okHandler)
	url := "https://" + s.Addr().String() + "/"
	c := f.Client(5 * time.Second)
	if code, _, _ := get(t, c, url, "prometheus", "old"); code != http.StatusOK {
		t.Fatalf("old password: got %d; want 200", code)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("new"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), "basic_auth_users:")
	if err := os.WriteFile(f.ConfigFile, []byte(string(b[:i])+"basic_auth_users:\n  prometheus: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := get(t, c, url, "prometheus", "old"); code != http.StatusUnauthorized {
		t.Errorf("old password after the change: got %d; want 401", code)
	}
	if code, _, _ := get(t, c, url, "prometheus", "new"); code != http.StatusOK {
		t.Errorf("new password: got %d; want 200", code)
	}
}

func TestServeWithoutConfigFile(t *testing.T) {
	s := start(t, "", okHandler)
	code, body, _ := get(t, &http.Client{Timeout: 5 * time.Second}, "http://"+s.Addr().String()+"/", "", "")
	if code != http.StatusOK || body != "ok\n" {
		t.Errorf("got %d %q; want 200 from the handler", code, body)
	}
}

func TestBasicAuthWithoutTLS(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(path, []byte("basic_auth_users:\n  u: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, path, okHandler)
	c := &http.Client{Timeout: 5 * time.Second}
	url := "http://" + s.Addr().String() + "/"
	if code, _, _ := get(t, c, url, "", ""); code != http.StatusUnauthorized {
		t.Errorf("no credentials: got %d; want 401", code)
	}
	if code, _, _ := get(t, c, url, "u", "pw"); code != http.StatusOK {
		t.Errorf("right credentials: got %d; want 200", code)
	}
}

func TestCheckConfigFile(t *testing.T) {
	dir := t.TempDir()
	f, err := webtest.Write(dir, "u", "pw")
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	for _, tc := range []struct {
		name    string
		content string // "" with noFile: the file does not exist
		noFile  bool
		want    string // substring of the error; "" for valid
	}{
		{name: "valid TLS and users", content: "tls_server_config:\n  cert_file: " + f.Cert + "\n  key_file: " + f.Key + "\nbasic_auth_users:\n  u: " + string(hash) + "\n"},
		{name: "users only", content: "basic_auth_users:\n  u: " + string(hash) + "\n"},
		{name: "empty file", content: ""},
		{name: "missing file", noFile: true, want: "no such file"},
		{name: "unknown key", content: "basic_auth_user:\n  u: x\n", want: "basic_auth_user"},
		{name: "password not hashed", content: "basic_auth_users:\n  u: secret\n", want: "must be a bcrypt hash"},
		{name: "missing cert file", content: "tls_server_config:\n  cert_file: " + filepath.Join(dir, "none.pem") + "\n  key_file: " + f.Key + "\n", want: "none.pem"},
		{name: "key without cert", content: "tls_server_config:\n  key_file: " + f.Key + "\n", want: "missing one of cert or cert_file"},
		{name: "cert and key mismatch", content: "tls_server_config:\n  cert_file: " + f.CACert + "\n  key_file: " + f.Key + "\n", want: "X509KeyPair"},
		{name: "bad client auth type", content: "tls_server_config:\n  cert_file: " + f.Cert + "\n  key_file: " + f.Key + "\n  client_auth_type: Sometimes\n", want: "ClientAuth"},
		{name: "not YAML", content: "tls_server_config: [\n", want: "yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yml")
			if !tc.noFile {
				if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := CheckConfigFile(path)
			if tc.want == "" {
				if err != nil {
					t.Errorf("got %v; want valid", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got valid; want an error mentioning %q", tc.want)
			}
			if !strings.Contains(err.Error(), "invalid web.config.file "+path) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q; want it to name the file and mention %q", err, tc.want)
			}
		})
	}
	if err := CheckConfigFile(""); err != nil {
		t.Errorf("empty path: got %v; want valid (plain HTTP)", err)
	}
}

func TestListenRejectsInvalidConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(path, []byte("basic_auth_users:\n  u: secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Listen("127.0.0.1:0", path, okHandler, testLogger(t))
	if err == nil {
		s.Shutdown(context.Background())
		t.Fatal("got a server; want an error")
	}
}

// Shutdown lets a request in progress finish, then Serve returns nil.
func TestShutdownWaitsForRequests(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		_, _ = io.WriteString(w, "done\n")
	})
	s, err := Listen("127.0.0.1:0", "", h, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + s.Addr().String() + "/")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{string(b), err}
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the handler")
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	select {
	case err := <-shut:
		t.Fatalf("shutdown returned %v while a request was in progress", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if r := <-got; r.err != nil || r.body != "done\n" {
		t.Errorf("got %q, %v; want the request to finish", r.body, r.err)
	}
	if err := <-served; err != nil {
		t.Errorf("serve returned %v; want nil", err)
	}
	if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		t.Errorf("the port still accepts connections after shutdown")
	}
}

// Shutdown before Serve releases the port.
func TestShutdownBeforeServe(t *testing.T) {
	s, err := Listen("127.0.0.1:0", "", okHandler, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port not released: %v", err)
	}
	ln.Close()
}

// deploy/web-config.example.yml is valid once its certificate paths exist,
// and its hash is of the password it documents.
func TestExampleConfigFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "web-config.example.yml"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := webtest.Write(t.TempDir(), "unused", "unused")
	if err != nil {
		t.Fatal(err)
	}
	example := strings.NewReplacer("/etc/bitville-apm/tls/server.pem", f.Cert, "/etc/bitville-apm/tls/server-key.pem", f.Key).Replace(string(b))
	if err := os.WriteFile(f.ConfigFile, []byte(example), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, f.ConfigFile, okHandler)
	c := f.Client(5 * time.Second)
	if code, _, _ := get(t, c, "https://"+s.Addr().String()+"/", "prometheus", "change me"); code != http.StatusOK {
		t.Errorf("example user and password: got %d; want 200", code)
	}
}
