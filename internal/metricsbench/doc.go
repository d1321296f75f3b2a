// Package metricsbench compares github.com/prometheus/client_golang and
// github.com/VictoriaMetrics/metrics for the APM daemon's metric hot path.
//
// The package contains only benchmarks and an equivalence test (see
// bench_test.go); nothing here is imported by the daemon. It models one
// "end" message from a PHP worker: request-level counters and classic
// (le-bucket) histograms, ~50 per-function series and ~20 per-SQL-statement
// series. Two access paths are measured for each library:
//
//   - cached: the daemon's own map from a small label-tuple struct to metric
//     handles (as used for cardinality limits and idle expiry), then updates
//     on the handles;
//   - lookup: the library's own label lookup on every update
//     (client_golang WithLabelValues, VictoriaMetrics GetOrCreate* with a
//     rendered "name{labels}" string).
//
// It also measures rendering /metrics in the Prometheus text format.
//
// Run with:
//
//	go test -run=. -bench=. -benchtime=2s -count=3 ./internal/metricsbench/
package metricsbench
