// Package stack starts the real peers of the PHP agent — PostgreSQL, a
// php-fpm pool and nginx — and of the exporters — Prometheus (also as a
// remote-write receiver), node_exporter, VictoriaMetrics, VictoriaLogs and
// the Prometheus Pushgateway — in temporary directories on free ports, for
// integration tests, benchmarks and the local demo.
//
// Every Start function takes a context that bounds only the start (waiting
// for the peer to accept connections), not the peer's life: a started peer
// runs until its Stop method is called. Each peer runs in its own process
// group, Stop ends the whole group, and the peer's logs stay in its
// directory so that errors can quote them. Nothing here imports testing:
// functions return errors and the caller decides what a failure means.
//
// Processes are started with Pdeathsig set, so a peer's main process is
// killed when the process that started it dies without calling Stop.
package stack
