package pushgw

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The kinds of push, the kind label of the self-metrics.
const (
	kindMetrics = "metrics"
	kindEvents  = "events"
)

// unknownProject is the project label of a push no token authenticated.
const unknownProject = "unknown"

// metrics are the gateway's self-metrics; the per-instance and per-project
// gauges are read from the store at scrape time (storeCollector).
type metrics struct {
	pushes        *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	samples       *prometheus.CounterVec
	events        *prometheus.CounterVec
	rewritten     *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	inflight      prometheus.Gauge
	tokenReloads  *prometheus.CounterVec
	tokenProjects prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_pushgw_pushes_total",
			Help: "Pushes answered, by project, kind (metrics, events) and result (applied, duplicate, stale, accepted, rejected).",
		}, []string{"project", "kind", "result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_pushgw_rejected_total",
			Help: "Pushes refused, by project (unknown without a valid token), kind and reason; none of a refused push is kept.",
		}, []string{"project", "kind", "reason"}),
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_pushgw_samples_received_total",
			Help: "Samples of applied metrics pushes, by project.",
		}, []string{"project"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_pushgw_events_received_total",
			Help: "Raw-trace events accepted and handed to the event sinks, by project.",
		}, []string{"project"}),
		rewritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_pushgw_rewritten_total",
			Help: "Series and events that claimed another project, job or instance than the push's and were rewritten (the claim kept as exported_<label>), by project and kind.",
		}, []string{"project", "kind"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bitville_pushgw_push_duration_seconds",
			Help:    "Time to read, check and apply one push, by kind.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"kind"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bitville_pushgw_inflight_pushes",
			Help: "Pushes being handled now.",
		}),
		tokenReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_pushgw_tokens_reloads_total",
			Help: "Reloads of the tokens file, by result (success, failure; a failure keeps the tokens in force).",
		}, []string{"result"}),
		tokenProjects: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bitville_pushgw_tokens_projects",
			Help: "Projects the tokens in force authenticate.",
		}),
	}
	for _, c := range []prometheus.Collector{m.pushes, m.rejected, m.samples, m.events, m.rewritten, m.duration, m.inflight, m.tokenReloads, m.tokenProjects} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{"success", "failure"} {
		m.tokenReloads.WithLabelValues(r)
	}
	return m, nil
}

// storeCollector reports the store's instances and series at scrape time.
type storeCollector struct {
	store                *Store
	up, lastPush, series *prometheus.Desc
	projectSeries        *prometheus.Desc
}

func newStoreCollector(s *Store) *storeCollector {
	inst := []string{"project", "job", "instance"}
	return &storeCollector{
		store:         s,
		up:            prometheus.NewDesc("bitville_pushgw_instance_up", "1 while the instance's last push is younger than its TTL, 0 after (then its series are gone); the instance is forgotten an hour after its last push.", inst, nil),
		lastPush:      prometheus.NewDesc("bitville_pushgw_instance_last_push_timestamp_seconds", "When the instance's last metrics push was applied.", inst, nil),
		series:        prometheus.NewDesc("bitville_pushgw_instance_series", "Series the instance's last push holds (0 once expired).", inst, nil),
		projectSeries: prometheus.NewDesc("bitville_pushgw_series", "Live series of a project, against pushgw.max-series-per-project.", []string{"project"}, nil),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.lastPush
	ch <- c.series
	ch <- c.projectSeries
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, in := range c.store.Instances() {
		up, series := 0.0, 0.0
		if in.Up {
			up, series = 1, float64(in.Series)
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, in.Project, in.Job, in.Instance)
		ch <- prometheus.MustNewConstMetric(c.lastPush, prometheus.GaugeValue, float64(in.LastPush.UnixNano())/1e9, in.Project, in.Job, in.Instance)
		ch <- prometheus.MustNewConstMetric(c.series, prometheus.GaugeValue, series, in.Project, in.Job, in.Instance)
	}
	for project, n := range c.store.ProjectSeries() {
		ch <- prometheus.MustNewConstMetric(c.projectSeries, prometheus.GaugeValue, float64(n), project)
	}
}
