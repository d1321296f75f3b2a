package push

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The push protocol between a pushing process and pushgw. Every request
// carries "Authorization: Bearer <token>"; bodies may be gzipped
// (Content-Encoding: gzip).
const (
	MetricsPath = "/api/v1/push/metrics"
	EventsPath  = "/api/v1/push/events"

	HeaderJob      = "Bitville-Job"      // the pushing program, e.g. bitville-apm-agent
	HeaderInstance = "Bitville-Instance" // the pushing host, e.g. its hostname
	HeaderBatch    = "Bitville-Batch"    // metrics: BatchID.String(); events: hex sha256 of the uncompressed body
	HeaderTime     = "Bitville-Time"     // metrics: unix milliseconds when the snapshot was gathered
	HeaderInterval = "Bitville-Interval" // metrics: the push interval, a Go duration ("15s")

	MetricsContentType = "text/plain; version=0.0.4; charset=utf-8" // Prometheus text exposition format 0.0.4
	EventsContentType  = "application/x-ndjson"
)

// Bounds of the wire's names and batch ids.
const (
	bootLen      = 16      // hex characters of BatchID.Boot
	maxSeq       = 1 << 63 // largest BatchID.Seq
	maxNameBytes = 128     // longest job or instance
)

// BatchID names one metrics snapshot of one process run: Boot is 16
// lowercase hex characters drawn at random when the pushing process
// starts, Seq counts its snapshots from 1. A gateway tells a resent
// snapshot (same Boot, Seq not above the last) from a restart (another
// Boot) by it.
type BatchID struct {
	Boot string
	Seq  uint64
}

// String is "<boot>-<seq>", the Bitville-Batch header of a metrics push.
func (b BatchID) String() string {
	return b.Boot + "-" + strconv.FormatUint(b.Seq, 10)
}

// ParseBatchID reads a BatchID.String strictly: 16 lowercase hex
// characters, '-', and a decimal 1..2^63 without sign or leading zeros.
func ParseBatchID(s string) (BatchID, error) {
	boot, seq, ok := strings.Cut(s, "-")
	if !ok {
		return BatchID{}, fmt.Errorf("invalid batch id %q: want <16 hex>-<seq>", s)
	}
	if !validBoot(boot) {
		return BatchID{}, fmt.Errorf("invalid batch id %q: the boot is not 16 lowercase hex characters", s)
	}
	n, err := parseSeq(seq)
	if err != nil {
		return BatchID{}, fmt.Errorf("invalid batch id %q: %w", s, err)
	}
	return BatchID{Boot: boot, Seq: n}, nil
}

func validBoot(s string) bool {
	if len(s) != bootLen {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

var errSeq = errors.New("the sequence number is not a decimal from 1 to 2^63")

func parseSeq(s string) (uint64, error) {
	if s == "" || s[0] == '0' {
		return 0, errSeq
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return 0, errSeq
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > maxSeq {
		return 0, errSeq
	}
	return n, nil
}

// ValidName says whether s may be a job or an instance: 1 to 128 bytes of
// printable UTF-8 (no control characters), no '/', and no space at either
// end, which an HTTP header would not keep.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > maxNameBytes || !utf8.ValidString(s) {
		return false
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for _, r := range s {
		if r == '/' || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
