package rawtrace

import (
	"strings"
	"testing"
)

func TestSinksFromConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		want    []string
		wantErr string
	}{
		{name: "none", want: nil},
		{name: "loki", cfg: Config{LokiURL: "http://loki:3100/loki/api/v1/push"}, want: []string{"loki"}},
		{name: "gelf", cfg: Config{GELFURL: "udp://graylog:12201"}, want: []string{"gelf"}},
		{name: "both", cfg: Config{LokiURL: "https://loki", GELFURL: "tcp://graylog:12201"}, want: []string{"loki", "gelf"}},
		{name: "bad gelf after a good loki", cfg: Config{LokiURL: "https://loki", GELFURL: "syslog://x"}, wantErr: "cannot build the GELF sink"},
		{name: "bad loki", cfg: Config{LokiURL: "loki"}, wantErr: "cannot build the Loki sink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sinks, err := newSinks(tc.cfg, testSinkOptions)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v; want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer closeSinks(sinks)
			var names []string
			for _, s := range sinks {
				names = append(names, s.Name())
			}
			if strings.Join(names, ",") != strings.Join(tc.want, ",") {
				t.Errorf("got sinks %v; want %v", names, tc.want)
			}
		})
	}
}

func TestSinksNewChecksConfig(t *testing.T) {
	if _, err := New(Config{GELFURL: "ws://graylog"}, Options{Job: "j"}, nil); err == nil || !strings.Contains(err.Error(), "scheme") {
		t.Errorf("New with a bad GELF URL: %v; want the GELF sink's error", err)
	}
}
