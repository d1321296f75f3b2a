// Package fastcgi is a minimal FastCGI 1.0 client: it sends one request in
// the Responder role over a new connection (unix socket or TCP) and returns
// the application's CGI response, parsed into status, headers and body.
//
// It is what the agent needs to read php-fpm's status page without a web
// server in between, and no more: no connection reuse, no multiplexing, no
// request body. The record layout, types and name-value encoding follow the
// FastCGI Specification 1.0 (Open Market, 1996), sections 3 to 6; the
// response is a CGI response (RFC 3875, section 6).
package fastcgi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"
)

// Record types (spec section 8).
const (
	typeBeginRequest = 1
	typeEndRequest   = 3
	typeParams       = 4
	typeStdin        = 5
	typeStdout       = 6
	typeStderr       = 7
)

const (
	version1      = 1
	headerLen     = 8
	maxContentLen = 65535
	roleResponder = 1
	requestID     = 1 // one request per connection, so any non-zero id will do
)

// Protocol statuses of FCGI_END_REQUEST (spec section 5.5).
const (
	StatusRequestComplete = 0
	StatusCantMpxConn     = 1
	StatusOverloaded      = 2
	StatusUnknownRole     = 3
)

// DefaultMaxResponseBytes bounds the STDOUT a response may carry when
// Client.MaxResponseBytes is 0: a php-fpm status page with `full` for a
// thousand workers is well under 1 MiB.
const DefaultMaxResponseBytes = 8 << 20

// maxStderrBytes bounds the STDERR kept; the rest is read and dropped.
const maxStderrBytes = 64 << 10

// Client sends FastCGI requests to one application server.
//
// A Client is safe for concurrent use: each Do dials its own connection.
type Client struct {
	// Network is "unix" or "tcp" (or "tcp4", "tcp6").
	Network string
	// Address is the socket path for "unix", host:port otherwise.
	Address string
	// MaxResponseBytes bounds the response's STDOUT stream (headers and
	// body). 0 means DefaultMaxResponseBytes. A longer response is an error.
	MaxResponseBytes int
}

// Response is a parsed CGI response.
type Response struct {
	Status    int         // from the Status header; 200 when absent (302 with only Location)
	Header    http.Header // response headers, canonical keys; Status is removed
	Body      []byte
	Stderr    []byte // what the application wrote to FCGI_STDERR, at most 64 KiB
	AppStatus uint32 // the application's exit status from FCGI_END_REQUEST
}

// ProtocolError is a response that does not follow the FastCGI protocol or
// carries no valid CGI response.
type ProtocolError struct {
	Msg string
	Err error // underlying cause, if any
}

func (e *ProtocolError) Error() string {
	if e.Err != nil {
		return "fastcgi: " + e.Msg + ": " + e.Err.Error()
	}
	return "fastcgi: " + e.Msg
}

func (e *ProtocolError) Unwrap() error { return e.Err }

// ErrResponseTooLarge is wrapped by the error of a response whose STDOUT
// exceeds Client.MaxResponseBytes.
var ErrResponseTooLarge = errors.New("response too large")

// Do sends one Responder request with params (the CGI variables, e.g.
// SCRIPT_FILENAME, REQUEST_METHOD, QUERY_STRING) and an empty body, and
// reads the response until FCGI_END_REQUEST. The deadline of ctx bounds
// the dial, the write and the read; cancelling ctx aborts them.
//
// Dial errors are returned as they come from the net package (a
// *net.OpError with Op "dial"); timeouts wrap context.DeadlineExceeded or
// os.ErrDeadlineExceeded; malformed responses are *ProtocolError.
func (c *Client) Do(ctx context.Context, params map[string]string) (*Response, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, c.Network, c.Address)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Cancelling ctx unblocks a read or write in progress.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := conn.Write(encodeRequest(params)); err != nil {
		return nil, c.ctxErr(ctx, fmt.Errorf("cannot send the request to %s: %w", c.Address, err))
	}
	max := c.MaxResponseBytes
	if max <= 0 {
		max = DefaultMaxResponseBytes
	}
	stdout, stderr, end, err := readResponse(conn, max)
	if err != nil {
		return nil, c.ctxErr(ctx, err)
	}
	if end.protocolStatus != StatusRequestComplete {
		return nil, &ProtocolError{Msg: fmt.Sprintf("request rejected with protocol status %d (%s)", end.protocolStatus, protocolStatusText(end.protocolStatus))}
	}
	resp, err := ParseResponse(stdout)
	if err != nil {
		return nil, err
	}
	resp.Stderr = stderr
	resp.AppStatus = end.appStatus
	return resp, nil
}

// ctxErr prefers the context's error when the connection failed because
// ctx ended, so callers can tell a timeout from a broken server.
func (c *Client) ctxErr(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if cerr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// The connection's deadline is the context's and can fire a moment
		// before the context's own timer.
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			cerr = context.DeadlineExceeded
		}
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%w)", cerr, err)
	}
	return err
}

func protocolStatusText(s byte) string {
	switch s {
	case StatusCantMpxConn:
		return "cannot multiplex"
	case StatusOverloaded:
		return "overloaded"
	case StatusUnknownRole:
		return "unknown role"
	}
	return "unknown"
}

// encodeRequest returns the records of one request: BEGIN_REQUEST in the
// Responder role without KEEP_CONN (the server closes the connection when
// done), the params stream and its empty terminator, and an empty STDIN.
func encodeRequest(params map[string]string) []byte {
	var b bytes.Buffer
	writeRecord(&b, typeBeginRequest, []byte{0, roleResponder, 0, 0, 0, 0, 0, 0})
	var p []byte
	for k, v := range params {
		p = appendPair(p, k, v)
	}
	for len(p) > 0 {
		n := min(len(p), maxContentLen)
		writeRecord(&b, typeParams, p[:n])
		p = p[n:]
	}
	writeRecord(&b, typeParams, nil)
	writeRecord(&b, typeStdin, nil)
	return b.Bytes()
}

// writeRecord appends one record, padded to a multiple of 8 bytes as the
// spec recommends. len(content) must be at most maxContentLen.
func writeRecord(b *bytes.Buffer, typ byte, content []byte) {
	pad := (8 - len(content)%8) % 8
	var h [headerLen]byte
	h[0] = version1
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:], requestID)
	binary.BigEndian.PutUint16(h[4:], uint16(len(content)))
	h[6] = byte(pad)
	b.Write(h[:])
	b.Write(content)
	b.Write(make([]byte, pad))
}

// appendPair appends a name-value pair: each length in one byte when below
// 128, else in four bytes with the top bit set (spec section 3.4).
func appendPair(p []byte, name, value string) []byte {
	p = appendLen(p, len(name))
	p = appendLen(p, len(value))
	p = append(p, name...)
	return append(p, value...)
}

func appendLen(p []byte, n int) []byte {
	if n < 128 {
		return append(p, byte(n))
	}
	return binary.BigEndian.AppendUint32(p, uint32(n)|1<<31)
}

type endRequest struct {
	appStatus      uint32
	protocolStatus byte
}

// readResponse reads records until FCGI_END_REQUEST for our request id.
// Management records (id 0) and records of other ids are skipped.
func readResponse(r io.Reader, maxStdout int) (stdout, stderr []byte, end endRequest, err error) {
	var h [headerLen]byte
	content := make([]byte, maxContentLen+255)
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, nil, end, &ProtocolError{Msg: "connection ended before END_REQUEST", Err: err}
		}
		if h[0] != version1 {
			return nil, nil, end, &ProtocolError{Msg: fmt.Sprintf("record of version %d; want 1", h[0])}
		}
		typ := h[1]
		id := binary.BigEndian.Uint16(h[2:])
		n := int(binary.BigEndian.Uint16(h[4:])) + int(h[6])
		body := content[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, nil, end, &ProtocolError{Msg: fmt.Sprintf("cannot read the content of a type %d record", typ), Err: err}
		}
		body = body[:binary.BigEndian.Uint16(h[4:])]
		if id != requestID {
			continue
		}
		switch typ {
		case typeStdout:
			if len(stdout)+len(body) > maxStdout {
				return nil, nil, end, &ProtocolError{Msg: fmt.Sprintf("response longer than %d bytes", maxStdout), Err: ErrResponseTooLarge}
			}
			stdout = append(stdout, body...)
		case typeStderr:
			if room := maxStderrBytes - len(stderr); room > 0 {
				stderr = append(stderr, body[:min(room, len(body))]...)
			}
		case typeEndRequest:
			if len(body) < 8 {
				return nil, nil, end, &ProtocolError{Msg: fmt.Sprintf("END_REQUEST of %d bytes; want 8", len(body))}
			}
			end.appStatus = binary.BigEndian.Uint32(body)
			end.protocolStatus = body[4]
			return stdout, stderr, end, nil
		default:
			// A responder sends nothing else for a request; ignore rather
			// than fail on what a later protocol revision might add.
		}
	}
}

// ParseResponse parses a CGI response: header lines ending in a blank line,
// then the body. Lines may end in CRLF or LF. The Status header ("404 Not
// Found") sets Response.Status; without it the status is 200, or 302 when
// the only header is Location (RFC 3875, section 6.2.3).
func ParseResponse(b []byte) (*Response, error) {
	end, skip := headerEnd(b)
	if end < 0 {
		return nil, &ProtocolError{Msg: fmt.Sprintf("no blank line after the response headers in %d bytes: %q", len(b), preview(b))}
	}
	resp := &Response{Status: http.StatusOK, Header: make(http.Header), Body: b[end+skip:]}
	for _, line := range strings.Split(string(b[:end]), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, &ProtocolError{Msg: fmt.Sprintf("malformed response header line %q", preview([]byte(line)))}
		}
		resp.Header.Add(textproto.CanonicalMIMEHeaderKey(k), strings.TrimSpace(v))
	}
	if s := resp.Header.Get("Status"); s != "" {
		code, _, _ := strings.Cut(s, " ")
		n, err := strconv.Atoi(code)
		if err != nil || n < 100 || n > 999 {
			return nil, &ProtocolError{Msg: fmt.Sprintf("malformed Status header %q", s)}
		}
		resp.Status = n
		resp.Header.Del("Status")
	} else if resp.Header.Get("Location") != "" && len(resp.Header) == 1 {
		resp.Status = http.StatusFound
	}
	return resp, nil
}

// headerEnd returns where the header block ends and the length of the
// blank-line separator, or -1.
func headerEnd(b []byte) (int, int) {
	crlf := bytes.Index(b, []byte("\r\n\r\n"))
	lf := bytes.Index(b, []byte("\n\n"))
	switch {
	case crlf >= 0 && (lf < 0 || crlf < lf):
		return crlf + 2, 2 // keep the first CRLF with the last header line
	case lf >= 0:
		return lf + 1, 1
	}
	return -1, 0
}

func preview(b []byte) []byte {
	if len(b) > 120 {
		return b[:120]
	}
	return b
}
