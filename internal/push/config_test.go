package push

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	token := writeFile(t, "token", testToken+"\n")
	empty := writeFile(t, "empty", "\n  \nsecond line\n")
	control := writeFile(t, "control", "tok\x01en\n")
	unreadable := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name string
		edit func(*Config)
		want string // in the error; "" for none
	}{
		{"defaults without push", func(c *Config) { c.URL, c.TokenFile = "", "" }, ""},
		{"https base", func(c *Config) { c.URL = "https://pushgw:19102" }, ""},
		{"http base with slash", func(c *Config) { c.URL = "http://10.0.0.5:19102/" }, ""},
		{"other scheme", func(c *Config) { c.URL = "ftp://pushgw" }, "push.url"},
		{"no scheme", func(c *Config) { c.URL = "pushgw:19102" }, "push.url"},
		{"no host", func(c *Config) { c.URL = "https:///x" }, "push.url"},
		{"path", func(c *Config) { c.URL = "https://pushgw/api/v1/push/metrics" }, "push.url"},
		{"query", func(c *Config) { c.URL = "https://pushgw/?a=b" }, "push.url"},
		{"fragment", func(c *Config) { c.URL = "https://pushgw/#x" }, "push.url"},
		{"credentials", func(c *Config) { c.URL = "https://u:p@pushgw/" }, "push.url"},
		{"no token file", func(c *Config) { c.TokenFile = "" }, "push.token-file"},
		{"token file missing", func(c *Config) { c.TokenFile = unreadable }, "push.token-file"},
		{"token file with empty first line", func(c *Config) { c.TokenFile = empty }, "push.token-file"},
		{"token with a control character", func(c *Config) { c.TokenFile = control }, "push.token-file"},
		{"interval under a second", func(c *Config) { c.Interval = 500 * time.Millisecond }, "push.interval"},
		{"spool without room", func(c *Config) { c.SpoolMaxBytes = 0 }, "push.spool-max-bytes"},
		{"no timeout", func(c *Config) { c.Timeout = 0 }, "push.timeout"},
		{"cert without key", func(c *Config) { c.TLS.CertFile = token }, "push.tls.cert-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t, "https://pushgw:19102")
			c.TokenFile = token
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v; want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v; want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := testConfig(t, "ftp://pushgw")
	c.TokenFile = ""
	c.Interval = 0
	err := c.Validate()
	for _, flag := range []string{"push.url", "push.token-file", "push.interval"} {
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("got %v; want it to name %s", err, flag)
		}
	}
}

func TestReadToken(t *testing.T) {
	path := writeFile(t, "token", "  abc.def-ghi  \r\nignored\n")
	got, err := ReadToken(path)
	if err != nil || got != "abc.def-ghi" {
		t.Errorf("got %q, %v; want abc.def-ghi", got, err)
	}
	if _, err := ReadToken(filepath.Join(t.TempDir(), "none")); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v; want a not-exist error", err)
	}
}

func TestEndpoint(t *testing.T) {
	for _, raw := range []string{"https://pushgw:19102", "https://pushgw:19102/"} {
		base, err := baseURL(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := endpoint(base, MetricsPath), "https://pushgw:19102/api/v1/push/metrics"; got != want {
			t.Errorf("endpoint of %s = %s; want %s", raw, got, want)
		}
	}
}
