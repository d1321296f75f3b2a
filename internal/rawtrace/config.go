package rawtrace

import (
	"time"

	"github.com/alecthomas/units"
)

// Config is the configuration of the raw-trace sinks and their delivery,
// the same flags on the agent and the pg-exporter (each command embeds
// it). With neither loki.url nor gelf.url nothing is shipped.
type Config struct {
	LokiURL      string            `name:"loki.url" placeholder:"URL" help:"Loki push URL, as Promtail takes it (http://loki:3100/loki/api/v1/push). Empty: no Loki sink."`
	LokiTenant   string            `name:"loki.tenant" placeholder:"ID" help:"Loki tenant, sent as X-Scope-OrgID. Empty: none."`
	LokiAuthFile string            `name:"loki.auth-file" placeholder:"FILE" help:"File holding the Loki credentials, read at start: user:password (basic auth) or a bearer token on its first line."`
	LokiFormat   string            `name:"loki.format" default:"protobuf" enum:"protobuf,json" help:"Push body: protobuf (snappy-compressed, Loki's native format) or json."`
	LokiHeaders  map[string]string `name:"loki.header" placeholder:"NAME=VALUE" help:"Extra HTTP header on every push (repeatable)."`
	LokiTLS      TLSConfig         `embed:"" prefix:"loki.tls."`
	GELFURL      string            `name:"gelf.url" placeholder:"URL" help:"Graylog GELF input: udp://host:12201 (chunked, gzip), tcp://host:12201 (NUL-framed) or http(s)://host:12201/gelf. Empty: no GELF sink."`
	GELFTLS      TLSConfig         `embed:"" prefix:"gelf.tls."`

	SpoolDir        string           `name:"events.spool-dir" placeholder:"DIR" help:"Directory of the on-disk spool in front of each sink (one subdirectory a sink). Empty: the command's default."`
	SpoolMaxBytes   units.Base2Bytes `name:"events.spool-max-bytes" default:"256MiB" help:"Spool size per sink; past it the lowest-priority, oldest events are dropped (bitville_events_dropped_total{reason=\"spool_full\"})."`
	BatchSize       int              `name:"events.batch-size" default:"500" help:"Most events in one push."`
	BatchBytes      units.Base2Bytes `name:"events.batch-bytes" default:"1MiB" help:"Most bytes of event lines in one push."`
	BatchWait       time.Duration    `name:"events.batch-wait" default:"1s" help:"Longest an event waits for its batch to fill."`
	Timeout         time.Duration    `name:"events.timeout" default:"10s" help:"Time limit of one push."`
	BreakerFailures int              `name:"events.breaker-failures" default:"5" help:"Consecutive failed pushes that open a sink's circuit breaker: no connection is tried until the probe."`
	BreakerProbe    time.Duration    `name:"events.breaker-probe" default:"60s" help:"How long an open breaker waits before one probe push."`
	BackoffMin      time.Duration    `name:"events.backoff-min" default:"500ms" help:"First wait after a failed push; doubled (with jitter) after each further failure."`
	BackoffMax      time.Duration    `name:"events.backoff-max" default:"30s" help:"Longest wait between retries while the breaker is closed."`
	RateLimit       float64          `name:"events.rate-limit" default:"50" help:"Events per second per project, on average; error events are let through first, sampled ones last."`
	RateBurst       int              `name:"events.rate-burst" default:"500" help:"Events per project that may pass at once above the rate."`
	MaxLineBytes    units.Base2Bytes `name:"events.max-line-bytes" default:"256KiB" help:"Largest event line; larger events are dropped (reason=\"too_large\"). Loki refuses lines over its max_line_size (256KB by default)."`
}

// TLSConfig is the TLS of one sink's connections (https:// for Loki and
// GELF over HTTP; GELF over TCP with tls:// is not offered).
type TLSConfig struct {
	CAFile             string `name:"ca-file" placeholder:"FILE" help:"CA certificates to verify the server with, PEM. Empty: the system's."`
	CertFile           string `name:"cert-file" placeholder:"FILE" help:"Client certificate, PEM."`
	KeyFile            string `name:"key-file" placeholder:"FILE" help:"Client key, PEM."`
	ServerName         string `name:"server-name" placeholder:"NAME" help:"Name to verify the server's certificate against. Empty: the URL's host."`
	InsecureSkipVerify bool   `name:"insecure-skip-verify" help:"Do not verify the server's certificate."`
}
