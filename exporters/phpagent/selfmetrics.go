package phpagent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/protocol"
)

// SelfMetrics counts what the daemon itself does: datagrams, rejections and
// their reasons, label overflow and expiry, in-flight bookkeeping, and what
// the PHP agents report they could not send.
type SelfMetrics struct {
	datagrams         prometheus.Counter
	bytes             prometheus.Counter
	readErrors        prometheus.Counter
	messages          *prometheus.CounterVec // type, result, reason
	overflow          *prometheus.CounterVec // label
	expired           *prometheus.CounterVec // label
	inflightFull      prometheus.Counter
	inflightEnded     *prometheus.CounterVec // reason
	unmatchedEnds     prometheus.Counter
	events            *prometheus.CounterVec // kind
	phpSendFails      *prometheus.CounterVec // project
	phpSQLDropped     *prometheus.CounterVec // project
	phpTruncated      *prometheus.CounterVec // project
	receiveBuffer     prometheus.Gauge
	queueLen          prometheus.Gauge
	spoolFiles        map[string]prometheus.Counter // by result
	spoolBacklog      prometheus.Gauge
	phpSpoolEvicted   prometheus.Counter
	spoolBacklogBytes prometheus.Gauge
	accepted          [4]prometheus.Counter // by protocol.Type
	invalid           map[protocol.Type]map[protocol.Reason]prometheus.Counter
}

// NewSelfMetrics creates the self metrics and registers them on reg.
func NewSelfMetrics(reg prometheus.Registerer) *SelfMetrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	vec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	s := &SelfMetrics{
		datagrams:         counter("bitville_agent_datagrams_received_total", "Datagrams read from the agent socket."),
		bytes:             counter("bitville_agent_datagram_bytes_total", "Bytes of datagrams read from the agent socket."),
		readErrors:        counter("bitville_agent_socket_read_errors_total", "Errors reading the agent socket."),
		messages:          vec("bitville_agent_messages_total", "Messages by type and result; invalid ones by the reason they were rejected.", "type", "result", "reason"),
		overflow:          vec("bitville_agent_series_overflow_total", "Label values that hit their limit and were counted as \"other\", by label.", "label"),
		expired:           vec("bitville_agent_series_expired_total", "Label values removed after being idle for the series TTL, by label.", "label"),
		inflightFull:      counter("bitville_agent_inflight_rejected_total", "Requests not tracked in flight because the table was full."),
		inflightEnded:     vec("bitville_agent_inflight_abandoned_total", "In-flight requests given up on, by reason.", "reason"),
		unmatchedEnds:     counter("bitville_agent_unmatched_ends_total", "End messages whose start was never seen (lost datagram or daemon restart); they are still aggregated."),
		events:            vec("bitville_agent_events_total", "Events kept for the raw-trace sink, by kind.", "kind"),
		phpSendFails:      vec("bitville_agent_php_send_failures_total", "Messages PHP workers report they could not send (daemon down or socket full).", "project"),
		phpSQLDropped:     vec("bitville_agent_php_sql_dropped_total", "SQL statements PHP agents left out of end messages past their per-request cap.", "project"),
		phpTruncated:      vec("bitville_agent_php_truncated_messages_total", "Messages the PHP agent truncated: cut to fit the datagram size limit, or statement texts cut at its sql_max_length.", "project"),
		receiveBuffer:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "bitville_agent_socket_receive_buffer_bytes", Help: "Receive buffer of the agent socket as the kernel granted it."}),
		queueLen:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "bitville_agent_socket_max_queued_datagrams", Help: "Datagrams the kernel queues on the agent socket before senders get EAGAIN (net.unix.max_dgram_qlen when the socket was made; 0 unknown)."}),
		spoolBacklog:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "bitville_agent_spool_backlog_files", Help: "Files found in the PHP agents' spool at the last pass and not yet taken in (0 once the pass has taken them)."}),
		spoolBacklogBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "bitville_agent_spool_backlog_bytes", Help: "Bytes of the files found in the PHP agents' spool at the last pass and not yet taken in."}),
		spoolFiles:        map[string]prometheus.Counter{},
		phpSpoolEvicted:   counter("bitville_agent_php_spool_evicted_total", "Spooled messages the PHP agents deleted, oldest first, to make room in a full spool (spool_max_bytes): lost."),
		invalid:           make(map[protocol.Type]map[protocol.Reason]prometheus.Counter),
	}
	reg.MustRegister(s.datagrams, s.bytes, s.readErrors, s.messages, s.overflow, s.expired,
		s.inflightFull, s.inflightEnded, s.unmatchedEnds, s.events, s.phpSendFails, s.phpSQLDropped,
		s.phpTruncated, s.receiveBuffer, s.queueLen, s.spoolBacklog, s.spoolBacklogBytes, s.phpSpoolEvicted)
	spoolFiles := vec("bitville_agent_spool_files_total", "Files of the PHP agents' spool taken in, by result: replayed (aggregated), skipped (not an end message), invalid, unreadable, expired (older than agent.spool-max-age) and evicted (oldest, past agent.spool-max-bytes); all but replayed are lost.", "result")
	reg.MustRegister(spoolFiles)

	// Create every series up front so that rates of rare results start at
	// zero instead of appearing out of nothing.
	for _, t := range []protocol.Type{protocol.TypeStart, protocol.TypeProgress, protocol.TypeEnd} {
		s.accepted[t] = s.messages.WithLabelValues(t.String(), "accepted", "none")
	}
	for _, t := range []protocol.Type{protocol.TypeUnknown, protocol.TypeStart, protocol.TypeProgress, protocol.TypeEnd} {
		s.invalid[t] = make(map[protocol.Reason]prometheus.Counter)
		for _, r := range protocol.Reasons {
			s.invalid[t][r] = s.messages.WithLabelValues(t.String(), "invalid", string(r))
		}
	}
	for _, l := range []string{"project", "endpoint", "function", "query_fp", "endpoint_query", "endpoint_function", "function_caller"} {
		s.overflow.WithLabelValues(l)
		s.expired.WithLabelValues(l)
	}
	for _, r := range []string{AbandonSuperseded, AbandonPIDGone, AbandonExpired} {
		s.inflightEnded.WithLabelValues(r)
	}
	for _, r := range spoolResults {
		s.spoolFiles[r] = spoolFiles.WithLabelValues(r)
	}
	for _, k := range []string{EventAbandoned, EventLongRunning} {
		s.events.WithLabelValues(k)
	}
	return s
}

// SeriesCounters returns the counters of label values sent to "other"
// (bitville_agent_series_overflow_total) and removed when idle
// (bitville_agent_series_expired_total), by label, for the parts of the
// agent that bound labels of their own (exporters/fpm's slowlog).
func (a *Agent) SeriesCounters() (overflow, expired *prometheus.CounterVec) {
	return a.self.overflow, a.self.expired
}

func (s *SelfMetrics) invalidMessage(t protocol.Type, r protocol.Reason) {
	if c, ok := s.invalid[t][r]; ok {
		c.Inc()
		return
	}
	s.messages.WithLabelValues(t.String(), "invalid", string(r)).Inc()
}
