package rawtrace

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"
)

// errorBodyBytes is how much of a refusal's body an error quotes: enough
// for Loki's or Graylog's one-line reason, not a whole HTML page.
const errorBodyBytes = 200

// drainBytes is the most of a response body read to let its connection be
// reused; a longer body costs a new connection rather than the time to
// read it.
const drainBytes = 64 << 10

// httpPoster sends request bodies to one URL over kept-alive connections
// with the same headers every time. Its methods may be called
// concurrently.
type httpPoster struct {
	url       string
	shown     string      // url without its password, for errors
	header    http.Header // sent on every request; Content-Type is set per request
	client    *http.Client
	transport *http.Transport
}

// newHTTPPoster checks url and builds the client with the TLS of t.
func newHTTPPoster(rawURL string, t TLSConfig, header http.Header) (*httpPoster, error) {
	u, err := parseSinkURL(rawURL, "http", "https")
	if err != nil {
		return nil, err
	}
	tc, err := sinkTLSConfig(t)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	// The pipeline sends one batch at a time per sink; a few idle
	// connections are all it reuses.
	tr.MaxIdleConnsPerHost = 2
	// No Timeout on the client: each push is bounded by its context.
	return &httpPoster{url: rawURL, shown: u.Redacted(), header: header, client: &http.Client{Transport: tr}, transport: tr}, nil
}

// post sends body with contentType (and contentEncoding when not "")
// and classifies the answer: nil for 2xx, a *PermanentError for a 4xx
// other than 429, and a plain error for the rest (429, 5xx, transport
// errors), which is worth retrying.
func (p *httpPoster) post(ctx context.Context, body []byte, contentType, contentEncoding string) error {
	return p.postWith(ctx, body, contentType, contentEncoding, nil)
}

// postWith is post with extra headers, which replace the poster's own of
// the same name.
func (p *httpPoster) postWith(ctx context.Context, body []byte, contentType, contentEncoding string, extra http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return &PermanentError{Err: fmt.Errorf("cannot build the request to %s: %w", p.shown, err)}
	}
	for k, v := range p.header {
		req.Header[k] = v
	}
	for k, v := range extra {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentType)
	if contentEncoding != "" {
		req.Header.Set("Content-Encoding", contentEncoding)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot post to %s: %w", p.shown, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
		return nil
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyBytes))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
	err = fmt.Errorf("%s answered HTTP %d: %s", p.shown, resp.StatusCode, QuoteBody(head))
	if permanentStatus(resp.StatusCode) {
		return &PermanentError{Err: err}
	}
	return err
}

// permanentStatus says whether an answer refuses the push for good: the
// body itself is wrong (400: malformed, too old, out of order; 413: too
// large; 422). Every other failure is retried, 401, 403 and 404 included:
// a wrong password or URL is a setting someone fixes, and the spool keeps
// the events until then rather than dropping each batch.
func permanentStatus(code int) bool {
	switch code {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// close lets go of the kept-alive connections.
func (p *httpPoster) close() {
	p.transport.CloseIdleConnections()
}

// QuoteBody makes the start of a response body fit on one log line, for
// the error of a refused request.
func QuoteBody(b []byte) string {
	s := strings.TrimSpace(string(b))
	for !utf8.ValidString(s) && len(s) > 0 { // cut mid-rune by the limit
		s = s[:len(s)-1]
	}
	if s == "" {
		return "(empty body)"
	}
	return fmt.Sprintf("%q", s)
}

// parseSinkURL parses a sink's URL, which must have a host and one of
// schemes. Config.Validate and the sinks' constructors both check with it.
func parseSinkURL(rawURL string, schemes ...string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("invalid URL: %w", err)
	}
	if u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("URL %q needs a scheme and a host", u.Redacted())
	}
	if !slices.Contains(schemes, u.Scheme) {
		last := len(schemes) - 1
		return nil, fmt.Errorf("URL %q: scheme %q is not %s or %s", u.Redacted(), u.Scheme, strings.Join(schemes[:last], ", "), schemes[last])
	}
	return u, nil
}

// sinkTLSConfig builds the client TLS of one sink.
func sinkTLSConfig(t TLSConfig) (*tls.Config, error) {
	c := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read the CA file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", t.CAFile)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("a client certificate needs both cert-file and key-file")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cannot load the client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// AuthHeader reads the Authorization header from a credentials file: its
// first line is user:password (HTTP basic auth) or a bearer token.
func AuthHeader(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read the auth file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", fmt.Errorf("auth file %s is empty: want user:password or a bearer token on its first line", path)
	}
	if strings.Contains(line, ":") {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(line)), nil
	}
	return "Bearer " + line, nil
}

// checkHeaders refuses header names and values HTTP cannot carry, so a
// mistyped --loki.header fails at start and not on every push.
func checkHeaders(h map[string]string) error {
	for k, v := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("header name %q is not a valid HTTP header name", k)
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			return fmt.Errorf("header %s: value %q is not a valid HTTP header value", k, v)
		}
	}
	return nil
}
