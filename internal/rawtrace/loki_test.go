package rawtrace

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
)

var testTime = time.Date(2026, 3, 1, 12, 30, 45, 123456789, time.UTC)

// testBatch has two streams: the first and third events share theirs.
func testBatch() []Event {
	return []Event{
		{Kind: "request", Level: LevelError, Priority: PriorityError, Project: "shop", Time: testTime,
			Summary: "GET /orders/{id} 500 2.31s failed", IDs: IDs{CorrelationID: "c-1", TraceID: "t-1", RequestID: "r-1", QueryFP: "fp1"},
			Line: json.RawMessage(`{"kind":"request","level":"error","project":"shop","status":500,"endpoint":"GET /orders/{id}"}`)},
		{Kind: "pg_locks", Level: LevelWarning, Priority: PriorityError, Project: "postgres", Time: testTime.Add(time.Second),
			Summary: "lock wait 3.0s", IDs: IDs{QueryFP: "fp2"},
			Line: json.RawMessage(`{"kind":"pg_locks","level":"warning","server":"db:5432/shop"}`)},
		{Kind: "request", Level: LevelError, Priority: PriorityError, Project: "shop", Time: testTime.Add(2 * time.Second),
			Summary: "GET / 500 0.10s failed",
			Line:    json.RawMessage(`{"kind":"request","level":"error","project":"shop","note":"quote \" and \\ and ünïcode"}`)},
	}
}

// lokiReceiver records what a push endpoint received and answers with
// status.
type lokiReceiver struct {
	mu      sync.Mutex
	status  int
	body    string
	headers []http.Header
	bodies  [][]byte
}

func (r *lokiReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.headers = append(r.headers, req.Header.Clone())
	r.bodies = append(r.bodies, b)
	status, body := r.status, r.body
	r.mu.Unlock()
	if status == 0 {
		status = http.StatusNoContent
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (r *lokiReceiver) last(t *testing.T) (http.Header, []byte) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bodies) == 0 {
		t.Fatal("got no push; want one")
	}
	return r.headers[len(r.headers)-1], r.bodies[len(r.bodies)-1]
}

func newLokiServer(t *testing.T) (*lokiReceiver, *httptest.Server) {
	r := &lokiReceiver{}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var testSinkOptions = SinkOptions{Job: "bitville-apm-agent", Instance: "web-1", Version: "v9.9.9"}

func newTestLoki(t *testing.T, cfg Config) *Loki {
	t.Helper()
	l, err := NewLoki(cfg, testSinkOptions)
	if err != nil {
		t.Fatalf("NewLoki: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func TestLokiProtobuf(t *testing.T) {
	r, srv := newLokiServer(t)
	l := newTestLoki(t, Config{LokiURL: srv.URL + "/loki/api/v1/push"})
	if err := l.Send(testContext(t), testBatch()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	h, body := r.last(t)
	if got := h.Get("Content-Type"); got != "application/x-protobuf" {
		t.Errorf("Content-Type %q; want application/x-protobuf", got)
	}
	if got := h.Get("User-Agent"); got != "bitville-apm/v9.9.9" {
		t.Errorf("User-Agent %q; want bitville-apm/v9.9.9", got)
	}
	if h.Get("X-Scope-OrgID") != "" || h.Get("Authorization") != "" {
		t.Errorf("got tenant %q, auth %q; want neither", h.Get("X-Scope-OrgID"), h.Get("Authorization"))
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatalf("snappy: %v", err)
	}
	var req push.PushRequest
	if err := req.Unmarshal(raw); err != nil {
		t.Fatalf("unmarshal PushRequest: %v", err)
	}
	batch := testBatch()
	want := []push.Stream{
		{Labels: `{instance="web-1", job="bitville-apm-agent", kind="request", level="error", project="shop"}`, Entries: []push.Entry{
			{Timestamp: batch[0].Time, Line: string(batch[0].Line), StructuredMetadata: push.LabelsAdapter{
				{Name: "correlation_id", Value: "c-1"}, {Name: "trace_id", Value: "t-1"}, {Name: "request_id", Value: "r-1"}, {Name: "query_fp", Value: "fp1"}}},
			{Timestamp: batch[2].Time, Line: string(batch[2].Line)},
		}},
		{Labels: `{instance="web-1", job="bitville-apm-agent", kind="pg_locks", level="warning", project="postgres"}`, Entries: []push.Entry{
			{Timestamp: batch[1].Time, Line: string(batch[1].Line), StructuredMetadata: push.LabelsAdapter{{Name: "query_fp", Value: "fp2"}}},
		}},
	}
	if len(req.Streams) != len(want) {
		t.Fatalf("got %d streams; want %d: %+v", len(req.Streams), len(want), req.Streams)
	}
	for i, s := range req.Streams {
		if s.Labels != want[i].Labels {
			t.Errorf("stream %d labels %s; want %s", i, s.Labels, want[i].Labels)
		}
		if len(s.Entries) != len(want[i].Entries) {
			t.Fatalf("stream %d: got %d entries; want %d", i, len(s.Entries), len(want[i].Entries))
		}
		for j, e := range s.Entries {
			w := want[i].Entries[j]
			if !e.Timestamp.Equal(w.Timestamp) || e.Line != w.Line || !reflect.DeepEqual(e.StructuredMetadata, w.StructuredMetadata) {
				t.Errorf("stream %d entry %d:\ngot  %v %s %v\nwant %v %s %v", i, j, e.Timestamp, e.Line, e.StructuredMetadata, w.Timestamp, w.Line, w.StructuredMetadata)
			}
		}
	}
}

func TestLokiJSON(t *testing.T) {
	r, srv := newLokiServer(t)
	l := newTestLoki(t, Config{LokiURL: srv.URL, LokiFormat: LokiFormatJSON})
	if err := l.Send(testContext(t), testBatch()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	h, body := r.last(t)
	if got := h.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q; want application/json", got)
	}
	var got struct {
		Streams []struct {
			Stream map[string]string `json:"stream"`
			Values [][]any           `json:"values"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("push body is not JSON: %v\n%s", err, body)
	}
	batch := testBatch()
	wantStreams := []map[string]string{
		{"instance": "web-1", "job": "bitville-apm-agent", "kind": "request", "level": "error", "project": "shop"},
		{"instance": "web-1", "job": "bitville-apm-agent", "kind": "pg_locks", "level": "warning", "project": "postgres"},
	}
	wantValues := [][][]any{
		{
			{"1772368245123456789", string(batch[0].Line), map[string]any{"correlation_id": "c-1", "trace_id": "t-1", "request_id": "r-1", "query_fp": "fp1"}},
			{"1772368247123456789", string(batch[2].Line)},
		},
		{{"1772368246123456789", string(batch[1].Line), map[string]any{"query_fp": "fp2"}}},
	}
	if len(got.Streams) != len(wantStreams) {
		t.Fatalf("got %d streams; want %d:\n%s", len(got.Streams), len(wantStreams), body)
	}
	for i, s := range got.Streams {
		if !reflect.DeepEqual(s.Stream, wantStreams[i]) {
			t.Errorf("stream %d labels %v; want %v", i, s.Stream, wantStreams[i])
		}
		if !reflect.DeepEqual(s.Values, wantValues[i]) {
			t.Errorf("stream %d values\ngot  %v\nwant %v", i, s.Values, wantValues[i])
		}
	}
}

func TestLokiHeaders(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		cfg      Config
		want     map[string]string
		wantUser string
		wantPass string
	}{
		{name: "tenant and extra headers",
			cfg:  Config{LokiTenant: "team-a", LokiHeaders: map[string]string{"X-Env": "prod", "X-Other": "1"}},
			want: map[string]string{"X-Scope-OrgID": "team-a", "X-Env": "prod", "X-Other": "1"}},
		{name: "basic auth", cfg: Config{LokiAuthFile: write("basic", "loki:s3cr:et\nignored\n")},
			wantUser: "loki", wantPass: "s3cr:et"},
		{name: "bearer token", cfg: Config{LokiAuthFile: write("bearer", "  tok.en-123 \n")},
			want: map[string]string{"Authorization": "Bearer tok.en-123"}},
		{name: "extra header replaces the user agent", cfg: Config{LokiHeaders: map[string]string{"User-Agent": "mine"}},
			want: map[string]string{"User-Agent": "mine"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, srv := newLokiServer(t)
			tc.cfg.LokiURL = srv.URL
			l := newTestLoki(t, tc.cfg)
			if err := l.Send(testContext(t), testBatch()[:1]); err != nil {
				t.Fatalf("Send: %v", err)
			}
			h, _ := r.last(t)
			for k, v := range tc.want {
				if got := h.Get(k); got != v {
					t.Errorf("header %s %q; want %q", k, got, v)
				}
			}
			if tc.wantUser != "" {
				req := http.Request{Header: h}
				user, pass, ok := req.BasicAuth()
				if !ok || user != tc.wantUser || pass != tc.wantPass {
					t.Errorf("basic auth %q %q %v; want %q %q", user, pass, ok, tc.wantUser, tc.wantPass)
				}
			}
		})
	}
}

func TestLokiConfigErrors(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"empty auth file", Config{LokiURL: "http://loki:3100", LokiAuthFile: empty}, "is empty"},
		{"missing auth file", Config{LokiURL: "http://loki:3100", LokiAuthFile: empty + ".missing"}, "cannot read the auth file"},
		{"bad format", Config{LokiURL: "http://loki:3100", LokiFormat: "xml"}, `format "xml"`},
		{"bad scheme", Config{LokiURL: "ftp://loki:3100"}, "not http or https"},
		{"no host", Config{LokiURL: "loki:3100/push"}, "needs a scheme and a host"},
		{"bad header name", Config{LokiURL: "http://loki:3100", LokiHeaders: map[string]string{"Bad Name": "x"}}, "not a valid HTTP header name"},
		{"bad header value", Config{LokiURL: "http://loki:3100", LokiHeaders: map[string]string{"X-A": "a\nb"}}, "not a valid HTTP header value"},
		{"missing CA file", Config{LokiURL: "https://loki", LokiTLS: TLSConfig{CAFile: empty + ".missing"}}, "cannot read the CA file"},
		{"CA file without certificates", Config{LokiURL: "https://loki", LokiTLS: TLSConfig{CAFile: empty}}, "holds no PEM certificate"},
		{"cert without key", Config{LokiURL: "https://loki", LokiTLS: TLSConfig{CertFile: empty}}, "needs both"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewLoki(tc.cfg, testSinkOptions)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v; want one containing %q", err, tc.want)
			}
		})
	}
}

func TestLokiTLS(t *testing.T) {
	r := &lokiReceiver{}
	srv := httptest.NewTLSServer(r)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	// httptest's certificate is for example.com and 127.0.0.1.
	for _, tc := range []struct {
		name    string
		tls     TLSConfig
		wantErr bool
	}{
		{"CA file", TLSConfig{CAFile: ca}, false},
		{"CA file and server name", TLSConfig{CAFile: ca, ServerName: "example.com"}, false},
		{"wrong server name", TLSConfig{CAFile: ca, ServerName: "other.test"}, true},
		{"system CAs", TLSConfig{}, true},
		{"insecure", TLSConfig{InsecureSkipVerify: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newTestLoki(t, Config{LokiURL: srv.URL, LokiTLS: tc.tls})
			err := l.Send(testContext(t), testBatch())
			if (err != nil) != tc.wantErr {
				t.Fatalf("Send: %v; want error %v", err, tc.wantErr)
			}
			var perm *PermanentError
			if errors.As(err, &perm) {
				t.Errorf("TLS failure is permanent: %v; want it retried", err)
			}
		})
	}
}

func TestLokiStatus(t *testing.T) {
	for _, tc := range []struct {
		status        int
		body          string
		wantErr, perm bool
		wantInErr     string
	}{
		{status: 204},
		{status: 200},
		{status: 400, body: "entry too far behind" + strings.Repeat(" x", 500), wantErr: true, perm: true, wantInErr: "HTTP 400: \"entry too far behind"},
		{status: 401, wantErr: true, wantInErr: "(empty body)"}, // a setting to fix: kept and retried
		{status: 404, wantErr: true},
		{status: 413, wantErr: true, perm: true},
		{status: 429, body: "rate limited", wantErr: true, wantInErr: "HTTP 429"},
		{status: 500, body: "ingester down", wantErr: true, wantInErr: "ingester down"},
		{status: 503, wantErr: true},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			r, srv := newLokiServer(t)
			r.status, r.body = tc.status, tc.body
			l := newTestLoki(t, Config{LokiURL: srv.URL})
			err := l.Send(testContext(t), testBatch())
			if (err != nil) != tc.wantErr {
				t.Fatalf("Send: %v; want error %v", err, tc.wantErr)
			}
			var perm *PermanentError
			if errors.As(err, &perm) != tc.perm {
				t.Errorf("permanent %v; want %v (%v)", !tc.perm, tc.perm, err)
			}
			if err != nil && !strings.Contains(err.Error(), tc.wantInErr) {
				t.Errorf("error %q; want it to contain %q", err, tc.wantInErr)
			}
			if err != nil && len(err.Error()) > 2*errorBodyBytes+100 {
				t.Errorf("error is %d bytes; want the body cut to about %d", len(err.Error()), errorBodyBytes)
			}
		})
	}
}

func TestLokiUnreachableIsRetried(t *testing.T) {
	_, srv := newLokiServer(t)
	url := srv.URL
	srv.Close()
	l := newTestLoki(t, Config{LokiURL: url})
	err := l.Send(testContext(t), testBatch())
	var perm *PermanentError
	if err == nil || errors.As(err, &perm) {
		t.Errorf("Send to a closed port: %v; want an error worth retrying", err)
	}
}

func TestLokiLabelEscaping(t *testing.T) {
	r, srv := newLokiServer(t)
	l, err := NewLoki(Config{LokiURL: srv.URL}, SinkOptions{Job: "j", Instance: `we"ird\host` + "\n"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	e := testBatch()[0]
	e.Project = ""
	if err := l.Send(testContext(t), []Event{e}); err != nil {
		t.Fatal(err)
	}
	_, body := r.last(t)
	raw, _ := snappy.Decode(nil, body)
	var req push.PushRequest
	if err := req.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	want := `{instance="we\"ird\\host\n", job="j", kind="request", level="error"}`
	if got := req.Streams[0].Labels; got != want {
		t.Errorf("labels %s; want %s", got, want)
	}
}

// TestLokiErrorsHideThePassword: a push error names the URL without the
// password it may carry.
func TestLokiErrorsHideThePassword(t *testing.T) {
	l := newTestLoki(t, Config{LokiURL: "http://bot:s3cret@127.0.0.1:1/loki/api/v1/push"})
	err := l.Send(testContext(t), testBatch())
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Send to a closed port: %v; want an error naming the URL without its password", err)
	}
}

// A tenant with {project} pushes each project's events under its own
// X-Scope-OrgID, and a forwarded event keeps the job and instance it came
// with.
func TestLokiTenantPerProject(t *testing.T) {
	r, srv := newLokiServer(t)
	l := newTestLoki(t, Config{LokiURL: srv.URL + "/loki/api/v1/push", LokiTenant: "team-" + TenantProject})
	batch := testBatch()
	batch[1].Job, batch[1].Instance = "bitville-apm-pg-exporter", "db-1"
	if err := l.Send(testContext(t), batch); err != nil {
		t.Fatalf("Send: %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	want := []struct {
		tenant string
		labels []string
	}{
		{"team-shop", []string{`{instance="web-1", job="bitville-apm-agent", kind="request", level="error", project="shop"}`}},
		{"team-postgres", []string{`{instance="db-1", job="bitville-apm-pg-exporter", kind="pg_locks", level="warning", project="postgres"}`}},
	}
	if len(r.bodies) != len(want) {
		t.Fatalf("got %d pushes; want %d", len(r.bodies), len(want))
	}
	for i, w := range want {
		if got := r.headers[i].Get("X-Scope-OrgID"); got != w.tenant {
			t.Errorf("push %d: tenant %q; want %q", i, got, w.tenant)
		}
		raw, err := snappy.Decode(nil, r.bodies[i])
		if err != nil {
			t.Fatalf("snappy: %v", err)
		}
		var req push.PushRequest
		if err := req.Unmarshal(raw); err != nil {
			t.Fatalf("unmarshal PushRequest: %v", err)
		}
		var got []string
		for _, s := range req.Streams {
			got = append(got, s.Labels)
		}
		if !reflect.DeepEqual(got, w.labels) {
			t.Errorf("push %d: streams %q; want %q", i, got, w.labels)
		}
	}
}
