// Package pushgw is the central listener that takes pushes per project: each
// pushing daemon's whole /metrics, kept per instance until its TTL passes and
// exposed on one /metrics, and its raw-trace events, forwarded to the event
// sinks.
package pushgw
