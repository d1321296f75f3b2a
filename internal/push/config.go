package push

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/units"
	"golang.org/x/net/http/httpguts"

	"github.com/bitville/bitville-apm/internal/rawtrace"
)

// Config is the push to pushgw, the same flags on the agent and the
// pg-exporter (each command embeds it and gives the env vars). With no
// push.url nothing is pushed.
type Config struct {
	URL           string             `name:"push.url" placeholder:"BASE_URL" help:"pushgw's base URL (https://pushgw:19102). Empty: no push."`
	TokenFile     string             `name:"push.token-file" placeholder:"FILE" help:"File whose first line is the project's bearer token for pushgw, read at start. Needed with push.url."`
	Instance      string             `name:"push.instance" placeholder:"NAME" help:"The instance label of everything this daemon pushes (pushgw keeps series per project, job and instance). Empty: the hostname."`
	Interval      time.Duration      `name:"push.interval" default:"15s" help:"How often the whole /metrics is gathered into a snapshot and pushed."`
	SpoolDir      string             `name:"push.spool-dir" placeholder:"DIR" help:"Directory of the on-disk spool of snapshots not yet delivered. Empty: the command's default."`
	SpoolMaxBytes units.Base2Bytes   `name:"push.spool-max-bytes" default:"256MiB" help:"Spool size; past it the oldest snapshots are dropped (bitville_push_pushes_total{result=\"dropped\"})."`
	Timeout       time.Duration      `name:"push.timeout" default:"30s" help:"Time limit of one push; a clean stop tries to deliver the spool for at most this or 5s, the shorter."`
	TLS           rawtrace.TLSConfig `embed:"" prefix:"push.tls."`
}

// minInterval is the shortest push.interval: pushgw keeps an instance
// alive for three intervals, and a sub-second push is a scrape in disguise.
const minInterval = time.Second

// Enabled reports whether c pushes at all.
func (c Config) Enabled() bool { return c.URL != "" }

// Validate reports every invalid setting at once. With push.url set it
// reads the token file, so a missing or empty one fails at start.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	if c.URL != "" {
		if _, err := baseURL(c.URL); err != nil {
			errs = append(errs, fmt.Errorf("push.url: %w", err))
		}
		if c.TokenFile == "" {
			errs = append(errs, errors.New("push.token-file: a token file is needed with push.url"))
		} else if _, err := ReadToken(c.TokenFile); err != nil {
			errs = append(errs, fmt.Errorf("push.token-file: %w", err))
		}
	}
	check(c.Interval >= minInterval, "push.interval %s must be at least %s", c.Interval, minInterval)
	check(c.SpoolMaxBytes > 0, "push.spool-max-bytes %s must be positive", c.SpoolMaxBytes)
	check(c.Timeout > 0, "push.timeout %s must be positive", c.Timeout)
	check((c.TLS.CertFile == "") == (c.TLS.KeyFile == ""), "push.tls.cert-file and push.tls.key-file go together")
	return errors.Join(errs...)
}

// baseURL parses pushgw's base URL: http or https, a host, no path but
// "/", no query, no fragment and no credentials (the token file carries
// those).
func baseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid URL: %w", err)
	}
	shown := u.Redacted()
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("URL %q: scheme %q is not http or https", shown, u.Scheme)
	case u.Host == "":
		return nil, fmt.Errorf("URL %q has no host", shown)
	case u.User != nil:
		return nil, fmt.Errorf("URL %q carries credentials; put the token in push.token-file", shown)
	case u.Path != "" && u.Path != "/":
		return nil, fmt.Errorf("URL %q has path %q; want the base URL, without a path", shown, u.Path)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("URL %q has a query or fragment; want the base URL alone", shown)
	}
	u.Path = ""
	return u, nil
}

// endpoint is the URL of one push path under base.
func endpoint(base *url.URL, path string) string {
	u := *base
	u.Path = path
	return u.String()
}

// ReadToken reads a bearer token file: its first line, trimmed, which
// must not be empty.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read the token file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", fmt.Errorf("token file %s is empty: want the token on its first line", path)
	}
	if !httpguts.ValidHeaderFieldValue(line) {
		return "", fmt.Errorf("token file %s: the token holds characters an HTTP header cannot carry", path)
	}
	return line, nil
}
