package rawtrace

import (
	"strings"
	"testing"

	"github.com/bitville/bitville-apm/internal/flagdefaults"
)

func TestValidate(t *testing.T) {
	var ok Config
	flagdefaults.Must(&ok)
	ok.LokiURL = "http://loki:3100/loki/api/v1/push"
	ok.GELFURL = "udp://graylog:12201"
	if err := ok.Validate(); err != nil {
		t.Fatalf("the defaults with two sinks: %v", err)
	}

	bad := ok
	bad.LokiURL = "loki:3100"
	bad.GELFURL = "ftp://graylog"
	bad.LokiTLS.CertFile = "cert.pem"
	bad.BatchSize = 0
	bad.SpoolMaxBytes = 1024
	bad.BackoffMax = bad.BackoffMin / 2
	bad.RateLimit = 0
	err := bad.Validate()
	if err == nil {
		t.Fatal("no error for an invalid configuration")
	}
	for _, want := range []string{"loki.url", "gelf.url", "loki.tls.cert-file", "events.batch-size", "events.spool-max-bytes", "events.backoff-max", "events.rate-limit"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}
