package rawtrace

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Graylog2/go-gelf/gelf"
)

// noise is n bytes of text gzip cannot shrink much, so a message holding
// it needs chunks.
func noise(n int) string {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n*3/4+3)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return base64.StdEncoding.EncodeToString(b)[:n]
}

func newTestGELF(t *testing.T, url string) *GELF {
	t.Helper()
	g, err := NewGELF(Config{GELFURL: url}, testSinkOptions)
	if err != nil {
		t.Fatalf("NewGELF(%s): %v", url, err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

// readGELF reads one message with go-gelf's reader, which reassembles
// chunks and inflates gzip as Graylog does.
func readGELF(t *testing.T, r *gelf.Reader) *gelf.Message {
	t.Helper()
	type result struct {
		m   *gelf.Message
		err error
	}
	ch := make(chan result, 1)
	go func() {
		m, err := r.ReadMessage()
		ch <- result{m, err}
	}()
	select {
	case res := <-ch:
		if res.err != nil {
			t.Fatalf("ReadMessage: %v", res.err)
		}
		return res.m
	case <-time.After(5 * time.Second):
		t.Fatal("got no GELF message within 5s")
	}
	return nil
}

func TestGELFUDP(t *testing.T) {
	r, err := gelf.NewReader("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := newTestGELF(t, "udp://"+r.Addr())
	big := testBatch()[0]
	big.Line = json.RawMessage(`{"kind":"request","level":"error","project":"shop","status":500,"wall":2.31,"fatal":true,"endpoint":"GET /orders/{id}","id":"x","bad name":1,"sql":[{"q":"SELECT 1"}],"blob":"` + noise(6000) + `"}`)
	small := testBatch()[1]
	if err := g.Send(testContext(t), []Event{big, small}); err != nil {
		t.Fatalf("Send: %v", err)
	}

	m := readGELF(t, r)
	if m.Version != "1.1" || m.Host != "web-1" || m.Short != big.Summary || m.Full != string(big.Line) || m.Level != 3 {
		t.Errorf("got version %q host %q short %q level %d full %d bytes; want 1.1 web-1 %q 3 %d bytes",
			m.Version, m.Host, m.Short, m.Level, len(m.Full), big.Summary, len(big.Line))
	}
	if want := float64(big.Time.UnixMicro()) / 1e6; m.TimeUnix != want {
		t.Errorf("timestamp %f; want %f", m.TimeUnix, want)
	}
	want := map[string]any{
		"_job": "bitville-apm-agent", "_kind": "request", "_project": "shop",
		"_correlation_id": "c-1", "_trace_id": "t-1", "_request_id": "r-1", "_query_fp": "fp1",
		"_status": 500.0, "_wall": 2.31, "_fatal": true, "_endpoint": "GET /orders/{id}", "_blob": noise(6000),
	}
	if !reflect.DeepEqual(m.Extra, want) {
		for k, v := range m.Extra {
			if !reflect.DeepEqual(v, want[k]) {
				t.Errorf("field %s = %.60v; want %.60v", k, v, want[k])
			}
		}
		for k := range want {
			if _, ok := m.Extra[k]; !ok {
				t.Errorf("field %s missing", k)
			}
		}
	}

	m = readGELF(t, r)
	if m.Short != small.Summary || m.Level != 4 || m.Extra["_kind"] != "pg_locks" || m.Extra["_server"] != "db:5432/shop" {
		t.Errorf("second message: short %q level %d fields %v", m.Short, m.Level, m.Extra)
	}
}

func TestGELFUDPOversized(t *testing.T) {
	r, err := gelf.NewReader("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := newTestGELF(t, "udp://"+r.Addr())
	tooBig := gelfMaxChunks * gelfChunkDataBytes * 8 / 5 // base64 noise gzips to about 3/4
	// Too large with full_message, small without it: sent without.
	nested := testBatch()[0]
	nested.Line = json.RawMessage(`{"kind":"request","stacks":[{"s":"` + noise(tooBig) + `"}]}`)
	// Too large either way: a top-level string is an additional field too.
	hopeless := testBatch()[2]
	hopeless.Line = json.RawMessage(`{"kind":"request","blob":"` + noise(tooBig) + `"}`)

	err = g.Send(testContext(t), []Event{nested, hopeless, testBatch()[1]})
	var part *PartialError
	if !errors.As(err, &part) || part.TooLarge != 1 || part.Rejected != 0 {
		t.Fatalf("Send: %v; want a *PartialError of one event too large", err)
	}
	if m := readGELF(t, r); m.Full != "" || m.Short != nested.Summary || m.Extra["_correlation_id"] != "c-1" {
		t.Errorf("got short %q full %d bytes fields %v; want %q without full_message", m.Short, len(m.Full), m.Extra, nested.Summary)
	}
	if m := readGELF(t, r); m.Extra["_kind"] != "pg_locks" {
		t.Errorf("got %q; want the pg_locks event after the dropped one", m.Short)
	}

	err = g.Send(testContext(t), []Event{hopeless, hopeless})
	if !errors.As(err, &part) || part.TooLarge != 2 || !errors.Is(err, errOversized) {
		t.Errorf("Send of only oversized events: %v; want a *PartialError of two too large", err)
	}
}

// gelfTCPReceiver accepts GELF TCP connections and splits what arrives at
// NUL bytes. It closes each connection after closeAfter messages when
// that is > 0.
type gelfTCPReceiver struct {
	ln         net.Listener
	closeAfter int
	mu         sync.Mutex
	msgs       []map[string]any
	conns      int
	got        chan struct{}
}

func newGELFTCPReceiver(t *testing.T, closeAfter int) *gelfTCPReceiver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &gelfTCPReceiver{ln: ln, closeAfter: closeAfter, got: make(chan struct{}, 100)}
	t.Cleanup(func() { ln.Close() })
	go r.accept()
	return r
}

func (r *gelfTCPReceiver) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns++
		r.mu.Unlock()
		go r.read(c)
	}
}

func (r *gelfTCPReceiver) read(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for n := 1; ; n++ {
		frame, err := br.ReadBytes(0)
		if err != nil {
			return
		}
		var m map[string]any
		if json.Unmarshal(frame[:len(frame)-1], &m) != nil {
			m = map[string]any{"invalid": string(frame)}
		}
		r.mu.Lock()
		r.msgs = append(r.msgs, m)
		r.mu.Unlock()
		r.got <- struct{}{}
		if n == r.closeAfter {
			return
		}
	}
}

func (r *gelfTCPReceiver) wait(t *testing.T, n int) []map[string]any {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-r.got:
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d GELF TCP messages within 5s; want %d", i, n)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.msgs...)
}

func TestGELFTCP(t *testing.T) {
	r := newGELFTCPReceiver(t, 2)
	g := newTestGELF(t, "tcp://"+r.ln.Addr().String())
	if err := g.Send(testContext(t), testBatch()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	// The receiver closed the connection after two messages and the
	// third was written to a dead connection or sent on a new one.
	msgs := r.wait(t, 2)
	if msgs[0]["short_message"] != testBatch()[0].Summary || msgs[0]["full_message"] != string(testBatch()[0].Line) || msgs[0]["_status"] != 500.0 {
		t.Errorf("first message %v", msgs[0])
	}
	if msgs[1]["level"] != 4.0 || msgs[1]["_server"] != "db:5432/shop" {
		t.Errorf("second message %v", msgs[1])
	}
	// Once the receiver has closed, the next batch goes on a new connection.
	time.Sleep(50 * time.Millisecond)
	later := testBatch()[2]
	if err := g.Send(testContext(t), []Event{later}); err != nil {
		t.Fatalf("Send after the receiver closed: %v", err)
	}
	msgs = r.wait(t, 1)
	last := msgs[len(msgs)-1]
	if last["short_message"] != later.Summary || last["_note"] != `quote " and \ and ünïcode` {
		t.Errorf("message after reconnecting %v", last)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns < 2 {
		t.Errorf("got %d connections; want a second one after the receiver closed the first", r.conns)
	}
}

func TestGELFTCPUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	g := newTestGELF(t, "tcp://"+addr)
	err = g.Send(testContext(t), testBatch())
	var perm *PermanentError
	if err == nil || errors.As(err, &perm) {
		t.Errorf("Send to a closed port: %v; want an error worth retrying", err)
	}
}

func TestGELFHTTP(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any
	status := map[string]int{} // by short_message; default 202
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var m map[string]any
		b, _ := io.ReadAll(req.Body)
		if req.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &m) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, m)
		s := status[m["short_message"].(string)]
		mu.Unlock()
		if s == 0 {
			s = http.StatusAccepted
		}
		w.WriteHeader(s)
	}))
	t.Cleanup(srv.Close)
	g := newTestGELF(t, srv.URL+"/gelf")
	batch := testBatch()
	if err := g.Send(testContext(t), batch); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if len(got) != 3 || got[0]["_correlation_id"] != "c-1" || got[1]["_query_fp"] != "fp2" || got[2]["host"] != "web-1" {
		t.Errorf("got %v", got)
	}

	for _, tc := range []struct {
		name      string
		status    map[string]int
		wantErr   bool
		perm      bool
		refused   int
		wantCalls int
	}{
		{name: "one refused", status: map[string]int{batch[1].Summary: 400}, refused: 1, wantCalls: 3},
		{name: "all refused", status: map[string]int{batch[0].Summary: 400, batch[1].Summary: 413, batch[2].Summary: 400}, wantErr: true, perm: true, wantCalls: 3},
		{name: "server error stops the batch", status: map[string]int{batch[1].Summary: 503}, wantErr: true, wantCalls: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			got, status = nil, tc.status
			mu.Unlock()
			err := g.Send(testContext(t), batch)
			var perm *PermanentError
			var part *PartialError
			refused := 0
			if errors.As(err, &part) {
				refused = part.Rejected
			}
			if (err != nil && part == nil) != tc.wantErr || (part == nil && errors.As(err, &perm)) != tc.perm {
				t.Errorf("Send: %v; want error %v, permanent %v", err, tc.wantErr, tc.perm)
			}
			if refused != tc.refused {
				t.Errorf("%d events refused in a partial answer; want %d", refused, tc.refused)
			}
			if len(got) != tc.wantCalls {
				t.Errorf("got %d posts; want %d", len(got), tc.wantCalls)
			}
		})
	}
}

func TestGELFConfigErrors(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"", "needs a scheme and a host"},
		{"graylog:12201", "needs a scheme and a host"},
		{"ws://graylog:12201", `scheme "ws" is not udp, tcp, http or https`},
		{"udp://gray log:12201", "invalid URL"},
		{"tcp://graylog", "has no port"},
	} {
		_, err := NewGELF(Config{GELFURL: tc.url}, testSinkOptions)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewGELF(%q): %v; want an error containing %q", tc.url, err, tc.want)
		}
	}
}

func TestGELFEncode(t *testing.T) {
	e := Event{Kind: "request", Level: LevelInfo, Project: "shop", Time: time.Unix(1700000000, 5000),
		Line: json.RawMessage(`{"kind":"other","id":7,"level":"info","message":"m","host":"php-1","_x":1,"ok.name-1":"v","bad/name":2,"ñ":3,"n":null,"o":{"a":1},"a":[1],"f":false,"e":1e3}`)}
	var m map[string]any
	if err := json.Unmarshal(encodeGELF(e, "h", "", false), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"version": "1.1", "host": "h", "short_message": "request event", "timestamp": 1700000000.000005, "level": 6.0,
		"_kind": "request", "_project": "shop", "_host": "php-1", "__x": 1.0, "_ok.name-1": "v", "_f": false, "_e": 1000.0,
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got  %v\nwant %v", m, want)
	}
}
