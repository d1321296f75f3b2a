package push

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/bitville/bitville-apm/internal/rawtrace"
)

// EventSink is a rawtrace.Sink named "pushgw" posting batches of events
// to pushgw's EventsPath as NDJSON, one rawtrace.Event a line, gzipped.
// The rawtrace Pipeline in front of it spools, batches and retries. When
// pushgw asks for a pause (Retry-After on 429 or 503), Send fails at once
// until the pause is over, so the Pipeline's backoff never retries sooner.
// Send may be called concurrently.
type EventSink struct {
	post *poster
	now  func() time.Time

	mu        sync.Mutex
	notBefore time.Time // no push before, as pushgw asked
}

// NewEventSink builds the sink of cfg: it reads the token and TLS files
// now, so a mistake fails at start. opts.SpoolDir is not used: the
// Pipeline holds the spool.
func NewEventSink(cfg Config, opts Options) (*EventSink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid push settings: %w", err)
	}
	opts, err := checkSettings(cfg, opts)
	if err != nil {
		return nil, err
	}
	post, err := newPoster(cfg, EventsPath, opts.Job, opts.Instance)
	if err != nil {
		return nil, fmt.Errorf("cannot build the pushgw event sink: %w", err)
	}
	return &EventSink{post: post, now: opts.Now}, nil
}

// Name is the sink label of the raw-trace self-metrics and the name of its
// spool directory.
func (s *EventSink) Name() string { return "pushgw" }

// Send pushes batch in one request, with Bitville-Batch the hex SHA-256 of
// the uncompressed body, so that pushgw knows a batch sent again. 2xx is
// nil (or a *rawtrace.PartialError counting events that could not be
// encoded and were left out); 400, 413, 415 and 422 are a
// *rawtrace.PermanentError; anything else is worth retrying.
func (s *EventSink) Send(ctx context.Context, batch []rawtrace.Event) error {
	if len(batch) == 0 {
		return nil
	}
	s.mu.Lock()
	wait := s.notBefore.Sub(s.now())
	s.mu.Unlock()
	if wait > 0 {
		return fmt.Errorf("cannot push %d events to pushgw yet: it asked to wait %s more", len(batch), wait.Round(time.Millisecond))
	}
	body, bad, badErr := encodeEvents(batch)
	if bad == len(batch) {
		return &rawtrace.PermanentError{Err: fmt.Errorf("cannot encode %d events for pushgw: %w", len(batch), badErr)}
	}
	sum := sha256.Sum256(body)
	gz, err := gzipBytes(body)
	if err != nil {
		return fmt.Errorf("cannot compress %d events for pushgw: %w", len(batch), err)
	}
	h := http.Header{}
	h.Set(HeaderBatch, hex.EncodeToString(sum[:]))
	err = s.post.post(ctx, gz, EventsContentType, h)
	if err == nil {
		if bad > 0 {
			return &rawtrace.PartialError{Rejected: bad, Err: badErr}
		}
		return nil
	}
	var re *retryError
	if errors.As(err, &re) && re.after > 0 {
		s.mu.Lock()
		s.notBefore = s.now().Add(re.after)
		s.mu.Unlock()
	}
	return fmt.Errorf("cannot push %d events to pushgw: %w", len(batch), err)
}

// Close lets go of the kept-alive connections.
func (s *EventSink) Close() error {
	s.post.close()
	return nil
}

// encodeEvents is the NDJSON body of batch: each event as JSON, a newline
// after each. An event that cannot be encoded (a line that is not valid
// JSON) is left out and counted in bad; err is the last such failure.
func encodeEvents(batch []rawtrace.Event) (body []byte, bad int, err error) {
	var buf bytes.Buffer
	for _, e := range batch {
		b, merr := json.Marshal(e)
		if merr != nil {
			bad++
			err = fmt.Errorf("cannot encode %s event: %w", e.Kind, merr)
			continue
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return buf.Bytes(), bad, err
}

func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
