package fpm

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/bitville/bitville-apm/internal/flagdefaults"
)

// Config is what to watch of php-fpm: the `--fpm.*` flags of
// `bitville-apm agent`, defaults and help in the tags.
type Config struct {
	StatusURIs    []string      `name:"fpm.status-uri" placeholder:"URI" help:"php-fpm pool status page to read over FastCGI at scrape time (repeatable, or comma-separated): unix:///run/php/php8.2-fpm.sock;/status or tcp://127.0.0.1:9000/status. The pool needs pm.status_path."`
	StatusTimeout time.Duration `name:"fpm.status-timeout" default:"2s" help:"Bound of one status page read; past it the pool's bitville_fpm_up is 0."`
	PollInterval  time.Duration `name:"fpm.poll-interval" default:"10s" help:"Also read the status pages this often between scrapes, so workers running past the long-request threshold are reported as events; 0 reads them only at scrape and API time."`
	Slowlogs      []string      `name:"fpm.slowlog" placeholder:"PATH" help:"php-fpm slowlog file to follow (repeatable, or comma-separated); read from its end at start, through rename and copytruncate rotation."`
}

// DefaultConfig returns the defaults of the flags: no pools, no slowlogs.
func DefaultConfig() Config {
	var c Config
	flagdefaults.Must(&c)
	return c
}

// Validate reports every problem of c at once, each naming its flag.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	uris := make(map[string]bool, len(c.StatusURIs))
	for _, u := range c.StatusURIs {
		if _, err := ParseStatusURI(u); err != nil {
			errs = append(errs, fmt.Errorf("fpm.status-uri: %w", err))
		}
		check(!uris[u], "fpm.status-uri %q is given twice", u)
		uris[u] = true
	}
	check(c.StatusTimeout >= 10*time.Millisecond && c.StatusTimeout <= time.Minute, "fpm.status-timeout %v must be between 10ms and 1m", c.StatusTimeout)
	check(c.PollInterval == 0 || c.PollInterval >= time.Second, "fpm.poll-interval %v must be 0 (off) or at least 1s", c.PollInterval)
	logs := make(map[string]bool, len(c.Slowlogs))
	for _, p := range c.Slowlogs {
		check(p != "", "fpm.slowlog must not be empty")
		check(!logs[p], "fpm.slowlog %q is given twice", p)
		logs[p] = true
	}
	return errors.Join(errs...)
}

// EventKinds are the kinds of the events a Monitor of c can emit: those of
// long-running workers with status pages, those of slowlog entries with
// slowlogs. A sink may count them from zero.
func (c Config) EventKinds() []string {
	var out []string
	if len(c.StatusURIs) > 0 {
		out = append(out, EventLongRunning)
	}
	if len(c.Slowlogs) > 0 {
		out = append(out, EventSlowlog)
	}
	return out
}

// Target is one pool's status page, parsed from a --fpm.status-uri value.
type Target struct {
	URI     string // as configured
	Network string // "unix" or "tcp"
	Address string // socket path or host:port
	Path    string // the pool's pm.status_path, e.g. /status
}

// ParseStatusURI parses a status page address in the format of
// hipages/php-fpm_exporter: `unix:///run/php/php8.2-fpm.sock;/status` or
// `tcp://127.0.0.1:9000/status`. The path defaults to /status. The agent
// adds `?json&full` itself, so a query is an error.
func ParseStatusURI(s string) (Target, error) {
	t := Target{URI: s}
	switch {
	case strings.HasPrefix(s, "unix://"):
		rest := strings.TrimPrefix(s, "unix://")
		sock, path, _ := strings.Cut(rest, ";")
		if sock == "" || !strings.HasPrefix(sock, "/") {
			return t, fmt.Errorf("fpm status uri %q: want unix:///absolute/socket/path;/status", s)
		}
		if len(sock) > 107 {
			return t, fmt.Errorf("fpm status uri %q: socket path longer than the 107 bytes a unix socket path may have", s)
		}
		t.Network, t.Address, t.Path = "unix", sock, path
	case strings.HasPrefix(s, "tcp://"):
		u, err := url.Parse(s)
		if err != nil {
			return t, fmt.Errorf("cannot parse fpm status uri %q: %w", s, err)
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return t, fmt.Errorf("fpm status uri %q: want tcp://host:port/path without user, query or fragment (the agent asks for ?json&full itself)", s)
		}
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
			return t, fmt.Errorf("fpm status uri %q: want tcp://host:port/path", s)
		}
		t.Network, t.Address, t.Path = "tcp", u.Host, u.Path
	default:
		return t, fmt.Errorf("fpm status uri %q: want unix:///socket;/path or tcp://host:port/path", s)
	}
	if t.Path == "" {
		t.Path = "/status"
	}
	if !strings.HasPrefix(t.Path, "/") || strings.ContainsAny(t.Path, "?# \t\r\n") {
		return t, fmt.Errorf("fpm status uri %q: the status path %q must start with / and have no query", s, t.Path)
	}
	return t, nil
}
