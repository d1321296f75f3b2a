// Package push sends a daemon's metrics and raw-trace events to pushgw.
package push

import (
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Paths, headers and content types of a push to pushgw.
const (
	MetricsPath = "/api/v1/push/metrics"
	EventsPath  = "/api/v1/push/events"

	HeaderJob      = "Bitville-Job"      // e.g. bitville-apm-agent
	HeaderInstance = "Bitville-Instance" // the pushing host, e.g. its hostname
	HeaderBatch    = "Bitville-Batch"    // metrics: BatchID.String(); events: hex sha256 of the uncompressed body
	HeaderTime     = "Bitville-Time"     // metrics: unix milliseconds when the snapshot was gathered
	HeaderInterval = "Bitville-Interval" // metrics: the push interval, Go duration ("15s")

	MetricsContentType = "text/plain; version=0.0.4; charset=utf-8" // Prometheus text exposition format 0.0.4
	EventsContentType  = "application/x-ndjson"
)

// bootLen is the length of BatchID.Boot in hex characters; maxNameBytes the
// longest job or instance name.
const (
	bootLen      = 16
	maxNameBytes = 128
)

// BatchID names one metrics snapshot of one process run: Boot is 16 lowercase
// hex characters drawn at random when the pushing process starts, Seq counts
// its snapshots from 1.
type BatchID struct {
	Boot string
	Seq  uint64
}

// String returns "<boot>-<seq>".
func (b BatchID) String() string { return b.Boot + "-" + strconv.FormatUint(b.Seq, 10) }

// ParseBatchID reads what String writes: 16 lowercase hex characters, '-',
// and a decimal sequence number from 1 to 2^63 without leading zeros.
func ParseBatchID(s string) (BatchID, error) {
	if len(s) < bootLen+2 || s[bootLen] != '-' {
		return BatchID{}, fmt.Errorf("cannot parse batch id %q: want <16 hex>-<seq>", s)
	}
	boot, seq := s[:bootLen], s[bootLen+1:]
	for i := 0; i < len(boot); i++ {
		if c := boot[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return BatchID{}, fmt.Errorf("cannot parse batch id %q: boot is not 16 lowercase hex characters", s)
		}
	}
	if seq[0] < '1' || seq[0] > '9' {
		return BatchID{}, fmt.Errorf("cannot parse batch id %q: sequence must be a decimal number from 1", s)
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil || n > 1<<63 {
		return BatchID{}, fmt.Errorf("cannot parse batch id %q: sequence out of range", s)
	}
	return BatchID{Boot: boot, Seq: n}, nil
}

// ValidName reports whether s may be a job or instance name: 1 to 128 bytes
// of printable UTF-8 without '/'.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > maxNameBytes || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == '/' || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
