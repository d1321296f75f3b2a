package fpm

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // "" for valid
	}{
		{name: "defaults", mutate: func(*Config) {}},
		{name: "pools and slowlogs", mutate: func(c *Config) {
			c.StatusURIs = []string{"unix:///run/php/fpm.sock;/status", "tcp://127.0.0.1:9000/status"}
			c.Slowlogs = []string{"/var/log/slow.log"}
			c.PollInterval = 0
		}},
		{name: "bad uri", mutate: func(c *Config) { c.StatusURIs = []string{"http://127.0.0.1/status"} }, want: "fpm.status-uri: fpm status uri"},
		{name: "uri twice", mutate: func(c *Config) { c.StatusURIs = []string{"tcp://php:9000", "tcp://php:9000"} }, want: "fpm.status-uri \"tcp://php:9000\" is given twice"},
		{name: "timeout too short", mutate: func(c *Config) { c.StatusTimeout = time.Millisecond }, want: "fpm.status-timeout"},
		{name: "timeout too long", mutate: func(c *Config) { c.StatusTimeout = time.Hour }, want: "fpm.status-timeout"},
		{name: "poll too often", mutate: func(c *Config) { c.PollInterval = 100 * time.Millisecond }, want: "fpm.poll-interval"},
		{name: "empty slowlog", mutate: func(c *Config) { c.Slowlogs = []string{""} }, want: "fpm.slowlog must not be empty"},
		{name: "slowlog twice", mutate: func(c *Config) { c.Slowlogs = []string{"/x", "/x"} }, want: "fpm.slowlog \"/x\" is given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v; want valid", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestConfigEventKinds(t *testing.T) {
	c := DefaultConfig()
	if k := c.EventKinds(); len(k) != 0 {
		t.Errorf("got %v without pools or slowlogs; want none", k)
	}
	c.StatusURIs = []string{"tcp://php:9000"}
	c.Slowlogs = []string{"/x"}
	if k := c.EventKinds(); !slices.Equal(k, []string{EventLongRunning, EventSlowlog}) {
		t.Errorf("got %v; want both kinds", k)
	}
}

func TestParseStatusURI(t *testing.T) {
	tests := []struct {
		in                     string
		network, address, path string
		wantErr                string
	}{
		{in: "unix:///run/php/php8.2-fpm.sock;/status", network: "unix", address: "/run/php/php8.2-fpm.sock", path: "/status"},
		{in: "unix:///run/php/php8.2-fpm.sock", network: "unix", address: "/run/php/php8.2-fpm.sock", path: "/status"},
		{in: "unix:///run/php/fpm.sock;/fpm-status", network: "unix", address: "/run/php/fpm.sock", path: "/fpm-status"},
		{in: "tcp://127.0.0.1:9000/status", network: "tcp", address: "127.0.0.1:9000", path: "/status"},
		{in: "tcp://127.0.0.1:9000", network: "tcp", address: "127.0.0.1:9000", path: "/status"},
		{in: "tcp://[::1]:9000/st", network: "tcp", address: "[::1]:9000", path: "/st"},
		{in: "tcp://php:9000/status", network: "tcp", address: "php:9000", path: "/status"},
		{in: "unix://relative.sock;/status", wantErr: "absolute"},
		{in: "unix://;/status", wantErr: "absolute"},
		{in: "unix:///" + strings.Repeat("x", 120) + ";/status", wantErr: "107 bytes"},
		{in: "tcp://127.0.0.1/status", wantErr: "host:port"},
		{in: "tcp://127.0.0.1:9000/status?json", wantErr: "without user, query"},
		{in: "tcp://127.0.0.1:9000/status#x", wantErr: "without user, query"},
		{in: "unix:///run/x.sock;status", wantErr: "must start with /"},
		{in: "unix:///run/x.sock;/status?full", wantErr: "no query"},
		{in: "http://127.0.0.1/status", wantErr: "want unix://"},
		{in: "/run/php/fpm.sock", wantErr: "want unix://"},
		{in: "", wantErr: "want unix://"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseStatusURI(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Network != tt.network || got.Address != tt.address || got.Path != tt.path || got.URI != tt.in {
				t.Errorf("got %+v; want %s %s %s", got, tt.network, tt.address, tt.path)
			}
		})
	}
}
