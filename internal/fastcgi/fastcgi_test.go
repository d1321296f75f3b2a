package fastcgi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// record is a decoded FastCGI record, for checking what the client sends
// and for scripting what a fake server answers.
type record struct {
	typ     byte
	id      uint16
	content []byte
}

func readRecord(r io.Reader) (record, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return record{}, err
	}
	if h[0] != version1 {
		return record{}, errors.New("bad version")
	}
	n := binary.BigEndian.Uint16(h[4:])
	body := make([]byte, int(n)+int(h[6]))
	if _, err := io.ReadFull(r, body); err != nil {
		return record{}, err
	}
	return record{typ: h[1], id: binary.BigEndian.Uint16(h[2:]), content: body[:n]}, nil
}

func rec(typ byte, id uint16, content []byte) []byte {
	var b bytes.Buffer
	pad := (8 - len(content)%8) % 8
	h := [headerLen]byte{version1, typ, 0, 0, 0, 0, byte(pad), 0}
	binary.BigEndian.PutUint16(h[2:], id)
	binary.BigEndian.PutUint16(h[4:], uint16(len(content)))
	b.Write(h[:])
	b.Write(content)
	b.Write(make([]byte, pad))
	return b.Bytes()
}

func endRec(app uint32, proto byte) []byte {
	c := make([]byte, 8)
	binary.BigEndian.PutUint32(c, app)
	c[4] = proto
	return rec(typeEndRequest, requestID, c)
}

// decodePairs decodes a params stream.
func decodePairs(t *testing.T, p []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	readLen := func() int {
		switch {
		case len(p) >= 1 && p[0]>>7 == 0:
			n := int(p[0])
			p = p[1:]
			return n
		case len(p) >= 4:
			n := int(binary.BigEndian.Uint32(p) &^ (1 << 31))
			p = p[4:]
			return n
		}
		return -1
	}
	for len(p) > 0 {
		nl, vl := readLen(), readLen()
		if nl < 0 || vl < 0 || nl+vl > len(p) {
			t.Errorf("malformed params stream")
			return out
		}
		out[string(p[:nl])] = string(p[nl : nl+vl])
		p = p[nl+vl:]
	}
	return out
}

// readRequest reads one request as a server would and returns its params.
func readRequest(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	begin, err := readRecord(r)
	if err != nil || begin.typ != typeBeginRequest || begin.id != requestID {
		t.Errorf("got first record %+v, %v; want BEGIN_REQUEST", begin, err)
		return nil
	}
	if role := binary.BigEndian.Uint16(begin.content); role != roleResponder || begin.content[2] != 0 {
		t.Errorf("got role %d flags %d; want responder without keep-conn", role, begin.content[2])
	}
	var params []byte
	records := 0
	for {
		r, err := readRecord(r)
		if err != nil {
			t.Errorf("reading params: %v", err)
			return nil
		}
		if r.typ != typeParams {
			t.Errorf("got record type %d; want PARAMS", r.typ)
			return nil
		}
		if len(r.content) == 0 {
			break
		}
		records++
		params = append(params, r.content...)
	}
	stdin, err := readRecord(r)
	if err != nil || stdin.typ != typeStdin || len(stdin.content) != 0 {
		t.Errorf("got %+v, %v; want an empty STDIN", stdin, err)
	}
	return decodePairs(t, params)
}

func TestEncodeRequest(t *testing.T) {
	tests := []struct {
		name   string
		params map[string]string
	}{
		{"none", map[string]string{}},
		{"short", map[string]string{"SCRIPT_NAME": "/status", "QUERY_STRING": "json&full", "EMPTY": ""}},
		{"long value uses 4-byte length", map[string]string{"X": strings.Repeat("v", 127), "Y": strings.Repeat("w", 128), strings.Repeat("N", 300): "n"}},
		{"params past one record", map[string]string{"BIG": strings.Repeat("b", 70000), "SMALL": "s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readRequest(t, bytes.NewReader(encodeRequest(tt.params)))
			if len(got) != len(tt.params) {
				t.Fatalf("got %d params; want %d", len(got), len(tt.params))
			}
			for k, v := range tt.params {
				if got[k] != v {
					t.Errorf("param %.20q: got %d bytes; want %d", k, len(got[k]), len(v))
				}
			}
		})
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		status  int
		header  string // key=value of one header to check
		body    string
		wantErr string
	}{
		{name: "crlf", in: "Content-type: application/json\r\nExpires: 0\r\n\r\n{\"a\":1}", status: 200, header: "Content-Type=application/json", body: `{"a":1}`},
		{name: "lf", in: "Content-Type: text/plain\n\npong", status: 200, header: "Content-Type=text/plain", body: "pong"},
		{name: "status header", in: "Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nFile not found.\n", status: 404, header: "Status=", body: "File not found.\n"},
		{name: "status code only", in: "Status: 503\r\n\r\n", status: 503},
		{name: "location only is a redirect", in: "Location: /x\r\n\r\n", status: 302, header: "Location=/x"},
		{name: "body keeps blank lines", in: "A: b\n\nline1\n\nline2", status: 200, body: "line1\n\nline2"},
		{name: "no blank line", in: "Content-Type: text/plain\r\n", wantErr: "no blank line"},
		{name: "empty", in: "", wantErr: "no blank line"},
		{name: "malformed header", in: "no colon here\r\n\r\n", wantErr: "malformed response header"},
		{name: "bad status", in: "Status: abc\r\n\r\n", wantErr: "malformed Status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseResponse([]byte(tt.in))
			if tt.wantErr != "" {
				var pe *ProtocolError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, &pe) {
					t.Fatalf("got %v; want a ProtocolError containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != tt.status || string(r.Body) != tt.body {
				t.Errorf("got status %d body %q; want %d %q", r.Status, r.Body, tt.status, tt.body)
			}
			if tt.header != "" {
				k, v, _ := strings.Cut(tt.header, "=")
				if got := r.Header.Get(k); got != v {
					t.Errorf("got header %s %q; want %q", k, got, v)
				}
			}
		})
	}
}

// fakeServer accepts one connection on a unix socket, reads the request and
// writes reply (or, with reply nil, holds the connection open without an
// answer until the test ends).
func fakeServer(t *testing.T, reply []byte) (path string, params <-chan map[string]string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "fcgi.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan map[string]string, 1)
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		got <- readRequest(t, c)
		if reply == nil {
			<-done
			return
		}
		_, _ = c.Write(reply)
	}()
	return path, got
}

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestDoFakeServer(t *testing.T) {
	okHead := []byte("Content-Type: application/json\r\n\r\n")
	tests := []struct {
		name    string
		reply   []byte
		max     int
		status  int
		body    string
		stderr  string
		app     uint32
		wantErr string
		errIs   error
	}{
		{
			name:   "stdout over several records, stderr, management records skipped",
			reply:  join(rec(typeStdout, requestID, okHead), rec(11, 0, []byte{99, 0, 0, 0, 0, 0, 0, 0}), rec(typeStderr, requestID, []byte("warn")), rec(typeStdout, requestID, []byte(`{"pool":`)), rec(typeStdout, 7, []byte("other request")), rec(typeStdout, requestID, []byte(`"www"}`)), rec(typeStdout, requestID, nil), endRec(3, StatusRequestComplete)),
			status: 200, body: `{"pool":"www"}`, stderr: "warn", app: 3,
		},
		{
			name:   "stdout of exactly 65535 bytes",
			reply:  join(rec(typeStdout, requestID, append([]byte("A: b\n\n"), bytes.Repeat([]byte("x"), 65535-6)...)), endRec(0, 0)),
			status: 200, body: strings.Repeat("x", 65535-6),
		},
		{name: "overloaded", reply: endRec(0, StatusOverloaded), wantErr: "overloaded"},
		{name: "unknown role", reply: endRec(0, StatusUnknownRole), wantErr: "unknown role"},
		{name: "closed before END_REQUEST", reply: rec(typeStdout, requestID, okHead), wantErr: "connection ended before END_REQUEST", errIs: io.ErrUnexpectedEOF},
		{name: "closed inside a record", reply: rec(typeStdout, requestID, okHead)[:12], wantErr: "cannot read the content", errIs: io.ErrUnexpectedEOF},
		{name: "bad version", reply: append([]byte{2}, rec(typeStdout, requestID, okHead)[1:]...), wantErr: "version 2"},
		{name: "short END_REQUEST", reply: rec(typeEndRequest, requestID, []byte{0, 0}), wantErr: "END_REQUEST of 2 bytes"},
		{name: "too large", max: 10, reply: join(rec(typeStdout, requestID, okHead), endRec(0, 0)), wantErr: "longer than 10 bytes", errIs: ErrResponseTooLarge},
		{name: "no CGI headers", reply: join(rec(typeStdout, requestID, []byte("just text")), endRec(0, 0)), wantErr: "no blank line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, params := fakeServer(t, tt.reply)
			c := &Client{Network: "unix", Address: path, MaxResponseBytes: tt.max}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			r, err := c.Do(ctx, map[string]string{"SCRIPT_NAME": "/status", "QUERY_STRING": "json&full"})
			if p := <-params; p["SCRIPT_NAME"] != "/status" || p["QUERY_STRING"] != "json&full" {
				t.Errorf("server got params %v", p)
			}
			if tt.wantErr != "" {
				var pe *ProtocolError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, &pe) {
					t.Fatalf("got %v; want a ProtocolError containing %q", err, tt.wantErr)
				}
				if tt.errIs != nil && !errors.Is(err, tt.errIs) {
					t.Errorf("got %v; want it to wrap %v", err, tt.errIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != tt.status || string(r.Body) != tt.body || string(r.Stderr) != tt.stderr || r.AppStatus != tt.app {
				t.Errorf("got status %d body %.40q stderr %q app %d; want %d %.40q %q %d", r.Status, r.Body, r.Stderr, r.AppStatus, tt.status, tt.body, tt.stderr, tt.app)
			}
		})
	}
}

func TestDoTimeout(t *testing.T) {
	path, _ := fakeServer(t, nil) // reads the request, never answers
	c := &Client{Network: "unix", Address: path}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Do(ctx, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v; want it to wrap context.DeadlineExceeded", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Do did not return after its deadline")
	}
}

func TestDoCancel(t *testing.T) {
	path, _ := fakeServer(t, nil)
	c := &Client{Network: "unix", Address: path}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Do(ctx, nil)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v; want it to wrap context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Do did not return after cancel")
	}
}

func TestDoDeadSocket(t *testing.T) {
	dir := t.TempDir()
	// A socket file nobody listens on (a crashed php-fpm leaves one), and
	// no file at all.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	for _, addr := range []string{stale, filepath.Join(dir, "missing.sock")} {
		c := &Client{Network: "unix", Address: addr}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.Do(ctx, nil)
		cancel()
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" {
			t.Errorf("%s: got %v; want a dial *net.OpError", addr, err)
		}
	}
}

// FuzzResponse checks that no byte stream from a server makes the record
// reader or the CGI parser panic or keep more than the bound.
func FuzzResponse(f *testing.F) {
	f.Add(join(rec(typeStdout, requestID, []byte("Status: 404\r\n\r\nx")), endRec(0, 0)))
	f.Add(join(rec(typeStderr, requestID, []byte("e")), rec(typeStdout, 0, nil), endRec(1, 2)))
	f.Add([]byte{1, 6, 0, 1, 255, 255, 255, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		stdout, _, _, err := readResponse(bytes.NewReader(b), 1<<16)
		if err != nil {
			return
		}
		if len(stdout) > 1<<16 {
			t.Fatalf("kept %d bytes past the bound", len(stdout))
		}
		_, _ = ParseResponse(stdout)
	})
}
