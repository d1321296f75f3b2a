package pushgw

import "time"

// Limits bound what one push and one project may hold. Its fields are kong
// flags, embedded by the command; the defaults are written here only.
type Limits struct {
	MaxSeriesPerPush    int           `name:"pushgw.max-series-per-push" default:"100000" help:"Most series one metrics push may hold; a larger push is refused with 413."`
	MaxSeriesPerProject int           `name:"pushgw.max-series-per-project" default:"1000000" help:"Most series all live instances of one project may hold together; a push that would pass it is refused with 413."`
	MaxLabels           int           `name:"pushgw.max-labels" default:"32" help:"Most labels one series may carry, including job, instance and project."`
	MaxLabelValueBytes  int           `name:"pushgw.max-label-value-bytes" default:"2048" help:"Longest label value accepted, in bytes."`
	MaxSampleAge        time.Duration `name:"pushgw.max-sample-age" default:"1h" help:"Oldest Bitville-Time accepted, behind the gateway's clock."`
	MaxClockSkew        time.Duration `name:"pushgw.max-clock-skew" default:"5m" help:"Newest Bitville-Time accepted, ahead of the gateway's clock."`
}
