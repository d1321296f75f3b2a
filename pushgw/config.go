package pushgw

import (
	"errors"
	"fmt"
	"time"

	"github.com/alecthomas/units"
)

// Config is what the gateway takes besides its sinks' flags (the command
// embeds rawtrace.Config for the events it forwards). The defaults are
// written here only; tests get them through internal/flagdefaults.
type Config struct {
	TokensFile string        `name:"pushgw.tokens-file" required:"" placeholder:"FILE" help:"YAML map projects: {name: token}, each token given itself (16 bytes or more) or as sha256:<hex of the token>. Read again on SIGHUP and when it changes."`
	SeriesTTL  time.Duration `name:"pushgw.series-ttl" default:"0s" help:"How long an instance's series stay after its last push. 0: three times the push interval the instance announces."`

	Limits `embed:""`

	MaxBodyBytes    units.Base2Bytes `name:"pushgw.max-body-bytes" default:"16MiB" help:"Largest push body as sent (413 beyond)."`
	MaxDecodedBytes units.Base2Bytes `name:"pushgw.max-decoded-bytes" default:"64MiB" help:"Largest push body once decompressed (413 beyond): a small gzip body can stand for a huge one."`
	SamplesRate     float64          `name:"pushgw.samples-rate" default:"200000" help:"Samples per second a project may push, on average (429 beyond)."`
	SamplesBurst    int              `name:"pushgw.samples-burst" default:"2000000" help:"Samples a project may push at once above its rate; at least pushgw.max-series-per-push."`
	EventsRate      float64          `name:"pushgw.events-rate" default:"500" help:"Raw-trace events per second a project may push, on average (429 beyond)."`
	EventsBurst     int              `name:"pushgw.events-burst" default:"5000" help:"Events a project may push at once above its rate."`
	MaxInflight     int              `name:"pushgw.max-inflight" default:"64" help:"Pushes handled at once; more are answered 503 with Retry-After."`
	ReadTimeout     time.Duration    `name:"pushgw.read-timeout" default:"60s" help:"Longest a client may take to send one request, body included: slow senders are cut off."`
	IdleTimeout     time.Duration    `name:"pushgw.idle-timeout" default:"2m" help:"Longest a kept-alive connection may idle between requests."`

	LokiTenantPerProject bool `name:"pushgw.loki-tenant-per-project" default:"true" negatable:"" help:"Push each project's events to Loki under its own tenant (X-Scope-OrgID = the project) when --loki.tenant is empty."`
}

// Validate checks the values that flags alone cannot.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.TokensFile != "", "pushgw.tokens-file is required")
	check(c.SeriesTTL >= 0, "pushgw.series-ttl %s must not be negative", c.SeriesTTL)
	check(c.MaxSeriesPerPush >= 1, "pushgw.max-series-per-push %d must be at least 1", c.MaxSeriesPerPush)
	check(c.MaxSeriesPerProject >= c.MaxSeriesPerPush, "pushgw.max-series-per-project %d must be at least pushgw.max-series-per-push %d", c.MaxSeriesPerProject, c.MaxSeriesPerPush)
	check(c.MaxLabels >= 4, "pushgw.max-labels %d must be at least 4 (job, instance, project and one more)", c.MaxLabels)
	check(c.MaxLabelValueBytes >= 64, "pushgw.max-label-value-bytes %d must be at least 64", c.MaxLabelValueBytes)
	check(c.MaxSampleAge > 0, "pushgw.max-sample-age %s must be positive", c.MaxSampleAge)
	check(c.MaxClockSkew >= 0, "pushgw.max-clock-skew %s must not be negative", c.MaxClockSkew)
	check(c.MaxBodyBytes >= 1024, "pushgw.max-body-bytes %d must be at least 1KiB", c.MaxBodyBytes)
	check(c.MaxDecodedBytes >= c.MaxBodyBytes, "pushgw.max-decoded-bytes %d must be at least pushgw.max-body-bytes %d", c.MaxDecodedBytes, c.MaxBodyBytes)
	check(c.SamplesRate > 0, "pushgw.samples-rate %g must be positive", c.SamplesRate)
	check(c.SamplesBurst >= c.MaxSeriesPerPush, "pushgw.samples-burst %d must be at least pushgw.max-series-per-push %d, or the largest push could never pass", c.SamplesBurst, c.MaxSeriesPerPush)
	check(c.EventsRate > 0, "pushgw.events-rate %g must be positive", c.EventsRate)
	check(c.EventsBurst >= 1, "pushgw.events-burst %d must be at least 1", c.EventsBurst)
	check(c.MaxInflight >= 1, "pushgw.max-inflight %d must be at least 1", c.MaxInflight)
	check(c.ReadTimeout > 0, "pushgw.read-timeout %s must be positive", c.ReadTimeout)
	check(c.IdleTimeout > 0, "pushgw.idle-timeout %s must be positive", c.IdleTimeout)
	return errors.Join(errs...)
}
