package fpm

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// collector exposes the pools' status at scrape time. A pool that cannot
// be read gives bitville_fpm_up 0 and no other pool series; it never fails
// the scrape.
type collector struct{ m *Monitor }

func desc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, []string{"pool"}, nil)
}

var (
	upDesc             = desc("bitville_fpm_up", "Whether the pool's php-fpm status page could be read (1) or not (0).")
	scrapeDurationDesc = desc("bitville_fpm_status_scrape_duration_seconds", "How long reading the pool's status page took.")
	activeDesc         = desc("bitville_fpm_active_processes", "Workers serving a request.")
	idleDesc           = desc("bitville_fpm_idle_processes", "Idle workers.")
	totalDesc          = desc("bitville_fpm_total_processes", "Workers, idle and active.")
	maxActiveDesc      = desc("bitville_fpm_max_active_processes", "Most workers active at once since php-fpm started.")
	listenQueueDesc    = desc("bitville_fpm_listen_queue", "Connections waiting in the listen queue for a free worker.")
	listenQueueMaxDesc = desc("bitville_fpm_listen_queue_max", "Longest listen queue since php-fpm started.")
	listenQueueLenDesc = desc("bitville_fpm_listen_queue_length", "Size of the socket's listen queue (backlog).")
	maxChildrenDesc    = desc("bitville_fpm_max_children_reached_total", "Times the pool hit pm.max_children since php-fpm started.")
	slowRequestsDesc   = desc("bitville_fpm_slow_requests_total", "Requests that exceeded request_slowlog_timeout since php-fpm started.")
	acceptedDesc       = desc("bitville_fpm_accepted_connections_total", "Connections accepted by the pool since php-fpm started.")
	startTimeDesc      = desc("bitville_fpm_start_time_seconds", "When php-fpm (the pool) started, in seconds since the epoch.")
	longRunningDesc    = desc("bitville_fpm_requests_long_running", "Workers in state Running whose request has run for longer than --agent.long-request-threshold.")
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{upDesc, scrapeDurationDesc, activeDesc, idleDesc, totalDesc,
		maxActiveDesc, listenQueueDesc, listenQueueMaxDesc, listenQueueLenDesc, maxChildrenDesc,
		slowRequestsDesc, acceptedDesc, startTimeDesc, longRunningDesc} {
		ch <- d
	}
	c.m.errors.Describe(ch)
	c.m.slow.describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	defer m.slow.collect(ch)
	defer m.errors.Collect(ch)
	if len(m.pools) == 0 {
		return
	}
	reads := m.readAll(context.Background())
	labels := m.labels()
	long := m.longRequest
	for i, r := range reads {
		pool := labels[i]
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, pool)
		}
		counter := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), pool)
		}
		gauge(scrapeDurationDesc, r.duration.Seconds())
		if r.err != nil {
			gauge(upDesc, 0)
			continue
		}
		s := &r.status
		gauge(upDesc, 1)
		gauge(activeDesc, float64(s.ActiveProcesses))
		gauge(idleDesc, float64(s.IdleProcesses))
		gauge(totalDesc, float64(s.TotalProcesses))
		gauge(maxActiveDesc, float64(s.MaxActiveProcesses))
		gauge(listenQueueDesc, float64(s.ListenQueue))
		gauge(listenQueueMaxDesc, float64(s.MaxListenQueue))
		gauge(listenQueueLenDesc, float64(s.ListenQueueLen))
		counter(maxChildrenDesc, s.MaxChildrenReached)
		counter(slowRequestsDesc, s.SlowRequests)
		counter(acceptedDesc, s.AcceptedConn)
		gauge(startTimeDesc, float64(s.StartTime.Unix()))
		n := 0
		for _, w := range s.Workers {
			if w.Running() && w.duration >= long {
				n++
			}
		}
		gauge(longRunningDesc, float64(n))
	}
}
