package push

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/flagdefaults"
	"github.com/bitville/bitville-apm/internal/rawtrace"
)

// testToken is the token of the tests' gateway.
const testToken = "s3cret-token"

// pushed is one request the test gateway received, its body decompressed.
type pushed struct {
	method, path string
	header       http.Header
	body         []byte
	status       int // the answer
}

// gateway is a stand-in for pushgw that records every request and answers
// with the status answer gives (200 when nil).
type gateway struct {
	srv *httptest.Server

	mu     sync.Mutex
	reqs   []pushed
	answer func(n int, h http.Header) (status int, retryAfter string) // n: requests before this one
}

func newGateway(t *testing.T) *gateway {
	t.Helper()
	g := &gateway{}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *gateway) serve(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	body := raw
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			http.Error(w, "bad gzip: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	g.mu.Lock()
	status, retryAfter := http.StatusOK, ""
	if g.answer != nil {
		status, retryAfter = g.answer(len(g.reqs), r.Header)
	}
	g.reqs = append(g.reqs, pushed{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: body, status: status})
	g.mu.Unlock()
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	if status/100 == 2 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"status":"applied","series":1}`)
		return
	}
	http.Error(w, "refused by the test", status)
}

func (g *gateway) setAnswer(f func(n int, h http.Header) (int, string)) {
	g.mu.Lock()
	g.answer = f
	g.mu.Unlock()
}

func (g *gateway) requests() []pushed {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]pushed(nil), g.reqs...)
}

// testConfig is the flag defaults pointed at url with a token file.
func testConfig(t *testing.T, url string) Config {
	t.Helper()
	var c Config
	flagdefaults.Must(&c)
	c.URL = url
	c.TokenFile = writeFile(t, "token", testToken+"\n# a comment line that is not read\n")
	c.SpoolDir = filepath.Join(t.TempDir(), "spool")
	return c
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fastDelivery keeps the tests' outages short.
var fastDelivery = rawtrace.Delivery{BreakerFailures: 3, BreakerProbe: 30 * time.Millisecond, BackoffMin: 2 * time.Millisecond, BackoffMax: 10 * time.Millisecond}

// waitFor polls cond until it holds, failing the test at a deadline far
// beyond what the condition needs on a busy machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
