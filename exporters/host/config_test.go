package host

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	want := Config{Enabled: true, ProcPath: "/proc", Interval: 5 * time.Second, TopNames: 20, ProcessNames: 200}
	if c != want {
		t.Errorf("got %+v; want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"disabled is not checked", func(c *Config) { c.Enabled, c.Interval = false, 0 }, nil},
		{"everything wrong", func(c *Config) { c.ProcPath, c.Interval, c.TopNames, c.ProcessNames = "", time.Millisecond, 0, 0 },
			[]string{"host.proc-path must not be empty", "host.interval 1ms must be between 1s and 1h", "limits.process-names 0 must be at least 1", "host.top-names 0 must be between 1 and limits.process-names 0"}},
		{"more top names than names", func(c *Config) { c.TopNames = 201 }, []string{"host.top-names 201 must be between 1 and limits.process-names 200"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Errorf("got %v; want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error; want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q; want it to contain %q", err, w)
				}
			}
		})
	}
}
