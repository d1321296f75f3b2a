// Package push is the client side of pushgw: the daemons that cannot be
// scraped push their metrics and events to it. wire.go holds the names
// both sides of the protocol share.
package push

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

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

// bootLen is the length of BatchID.Boot in hex characters.
const bootLen = 16

// maxNameBytes is the longest job or instance name.
const maxNameBytes = 128

// BatchID names one metrics snapshot of one process run: Boot is 16
// lowercase hex characters drawn at random when the pushing process
// starts, Seq counts its snapshots from 1. String() is "<boot>-<seq>".
type BatchID struct {
	Boot string
	Seq  uint64
}

func (b BatchID) String() string { return b.Boot + "-" + strconv.FormatUint(b.Seq, 10) }

// ParseBatchID reads "<boot>-<seq>" strictly: 16 lowercase hex
// characters, '-', a decimal sequence number from 1 to 2^63.
func ParseBatchID(s string) (BatchID, error) {
	boot, seq, ok := strings.Cut(s, "-")
	if !ok {
		return BatchID{}, fmt.Errorf("invalid batch id %q: want <boot>-<seq>", s)
	}
	if len(boot) != bootLen || strings.IndexFunc(boot, func(r rune) bool { return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') }) >= 0 {
		return BatchID{}, fmt.Errorf("invalid batch id %q: the boot part must be %d lowercase hex characters", s, bootLen)
	}
	if seq == "" || seq[0] < '1' || seq[0] > '9' || strings.IndexFunc(seq, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return BatchID{}, fmt.Errorf("invalid batch id %q: the sequence must be a decimal number from 1", s)
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil || n > math.MaxInt64+1 {
		return BatchID{}, errors.Join(fmt.Errorf("invalid batch id %q: the sequence is above 2^63", s), err)
	}
	return BatchID{Boot: boot, Seq: n}, nil
}

// ValidName says whether s may be a job or instance name: 1 to 128 bytes
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
