// Package push delivers a process's metrics and raw traces to pushgw, the
// central gateway, for hosts that Prometheus cannot scrape. A Pusher
// gathers the whole /metrics every interval into a snapshot on disk and
// sends the snapshots, oldest first, behind a circuit breaker; an
// EventSink is the raw-trace sink that posts events to pushgw. wire.go
// holds what both ends of the push protocol share.
package push
