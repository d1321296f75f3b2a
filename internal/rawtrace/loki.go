package rawtrace

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
)

// SinkOptions are what a sink needs to know about the process it ships
// for.
type SinkOptions struct {
	Job      string // Loki label job, GELF _job
	Instance string // Loki label instance, GELF host
	Version  string // in the User-Agent
}

// The Loki push bodies (--loki.format).
const (
	LokiFormatProtobuf = "protobuf"
	LokiFormatJSON     = "json"
)

// Loki pushes batches to Loki's push API (/loki/api/v1/push), or to
// anything that speaks it (VictoriaLogs, Grafana Cloud), as one request a
// batch. Each event becomes one entry in the stream of its labels job,
// project, instance, kind and level; its IDs become the entry's
// structured metadata. Send may be called concurrently.
type Loki struct {
	job, instance string
	json          bool
	poster        *httpPoster
}

// NewLoki builds the Loki sink of cfg: it reads the auth file and the TLS
// files now, so a mistake fails at start. Headers of cfg.LokiHeaders are
// sent last and may replace the User-Agent, tenant and auth headers;
// Content-Type and Content-Encoding are always the body's.
func NewLoki(cfg Config, o SinkOptions) (*Loki, error) {
	l := &Loki{job: o.Job, instance: o.Instance}
	switch cfg.LokiFormat {
	case "", LokiFormatProtobuf:
	case LokiFormatJSON:
		l.json = true
	default:
		return nil, fmt.Errorf("cannot build the Loki sink: format %q is not %s or %s", cfg.LokiFormat, LokiFormatProtobuf, LokiFormatJSON)
	}
	h := http.Header{}
	h.Set("User-Agent", "bitville-apm/"+o.Version)
	if cfg.LokiTenant != "" {
		h.Set("X-Scope-OrgID", cfg.LokiTenant)
	}
	if cfg.LokiAuthFile != "" {
		auth, err := authHeader(cfg.LokiAuthFile)
		if err != nil {
			return nil, fmt.Errorf("cannot build the Loki sink: %w", err)
		}
		h.Set("Authorization", auth)
	}
	if err := checkHeaders(cfg.LokiHeaders); err != nil {
		return nil, fmt.Errorf("cannot build the Loki sink: %w", err)
	}
	for k, v := range cfg.LokiHeaders {
		h.Set(k, v)
	}
	p, err := newHTTPPoster(cfg.LokiURL, cfg.LokiTLS, h)
	if err != nil {
		return nil, fmt.Errorf("cannot build the Loki sink: %w", err)
	}
	l.poster = p
	return l, nil
}

// Name is the sink label of the self-metrics.
func (l *Loki) Name() string { return "loki" }

// Send pushes batch in one request. Loki answers 204; 429 and 5xx are
// worth retrying; any other refusal (400: line too long, too old, bad
// labels) is a *PermanentError.
func (l *Loki) Send(ctx context.Context, batch []Event) error {
	if len(batch) == 0 {
		return nil
	}
	streams := l.group(batch)
	var err error
	if l.json {
		err = l.poster.post(ctx, lokiJSON(streams), "application/json", "")
	} else {
		var body []byte
		if body, err = lokiProtobuf(streams); err != nil {
			return &PermanentError{Err: fmt.Errorf("cannot encode the Loki push: %w", err)}
		}
		err = l.poster.post(ctx, body, "application/x-protobuf", "")
	}
	if err != nil {
		return fmt.Errorf("cannot push %d events to Loki: %w", len(batch), err)
	}
	return nil
}

// Close lets go of the kept-alive connections.
func (l *Loki) Close() error {
	l.poster.close()
	return nil
}

// lokiStream is the events of one label set, in batch order.
type lokiStream struct {
	labels []push.LabelAdapter // sorted by name, empty values left out
	events []Event
}

// streamKey is what tells the streams of a batch apart: job and instance
// are the sink's own.
type streamKey struct{ project, kind, level string }

// group splits a batch into streams in the order each first appears.
func (l *Loki) group(batch []Event) []lokiStream {
	index := map[streamKey]int{}
	var streams []lokiStream
	for _, e := range batch {
		k := streamKey{e.Project, e.Kind, e.Level}
		i, ok := index[k]
		if !ok {
			i = len(streams)
			index[k] = i
			streams = append(streams, lokiStream{labels: l.labels(e)})
		}
		streams[i].events = append(streams[i].events, e)
	}
	return streams
}

// labels are the stream labels of e sorted by name, as Loki keeps them.
func (l *Loki) labels(e Event) []push.LabelAdapter {
	return nonEmpty( // sorted by name
		push.LabelAdapter{Name: "instance", Value: l.instance},
		push.LabelAdapter{Name: "job", Value: l.job},
		push.LabelAdapter{Name: "kind", Value: e.Kind},
		push.LabelAdapter{Name: "level", Value: e.Level},
		push.LabelAdapter{Name: "project", Value: e.Project},
	)
}

// lokiMetadata are the non-empty IDs of e, Loki's structured metadata.
func lokiMetadata(ids IDs) push.LabelsAdapter {
	return nonEmpty(
		push.LabelAdapter{Name: "correlation_id", Value: ids.CorrelationID},
		push.LabelAdapter{Name: "trace_id", Value: ids.TraceID},
		push.LabelAdapter{Name: "request_id", Value: ids.RequestID},
		push.LabelAdapter{Name: "query_fp", Value: ids.QueryFP},
	)
}

// nonEmpty keeps the pairs with a value: Loki refuses empty label values,
// and an empty id says nothing.
func nonEmpty(lvs ...push.LabelAdapter) []push.LabelAdapter {
	out := lvs[:0]
	for _, lv := range lvs {
		if lv.Value != "" {
			out = append(out, lv)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// entryTime is when e happened; an event without a time is stamped now
// rather than at 1970, which Loki would refuse as too old.
func entryTime(e Event) time.Time {
	if e.Time.IsZero() {
		return time.Now()
	}
	return e.Time
}

// labelString writes labels in the form Loki parses the protobuf push's
// labels with, {a="b", c="d"}, values quoted with Go's escapes (which
// LogQL's parser reads back).
func labelString(ls []push.LabelAdapter) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(l.Name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l.Value))
	}
	b.WriteByte('}')
	return b.String()
}

// lokiProtobuf is the snappy-compressed protobuf body of Loki's push.
func lokiProtobuf(streams []lokiStream) ([]byte, error) {
	req := push.PushRequest{Streams: make([]push.Stream, 0, len(streams))}
	for _, s := range streams {
		entries := make([]push.Entry, 0, len(s.events))
		for _, e := range s.events {
			entries = append(entries, push.Entry{Timestamp: entryTime(e), Line: string(e.Line), StructuredMetadata: lokiMetadata(e.IDs)})
		}
		req.Streams = append(req.Streams, push.Stream{Labels: labelString(s.labels), Entries: entries})
	}
	raw, err := req.Marshal()
	if err != nil {
		return nil, err
	}
	return snappy.Encode(nil, raw), nil
}

// lokiJSON is the JSON body of Loki's push:
// {"streams":[{"stream":{labels},"values":[["<unix ns>","<line>",{metadata}]]}]}.
func lokiJSON(streams []lokiStream) []byte {
	var b []byte
	b = append(b, `{"streams":[`...)
	for i, s := range streams {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"stream":{`...)
		for j, l := range s.labels {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, l.Name)
			b = append(b, ':')
			b = appendJSONString(b, l.Value)
		}
		b = append(b, `},"values":[`...)
		for j, e := range s.events {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, `["`...)
			b = strconv.AppendInt(b, entryTime(e).UnixNano(), 10)
			b = append(b, `",`...)
			b = appendJSONString(b, string(e.Line))
			if md := lokiMetadata(e.IDs); len(md) > 0 {
				b = append(b, ",{"...)
				for k, l := range md {
					if k > 0 {
						b = append(b, ',')
					}
					b = appendJSONString(b, l.Name)
					b = append(b, ':')
					b = appendJSONString(b, l.Value)
				}
				b = append(b, '}')
			}
			b = append(b, ']')
		}
		b = append(b, "]}"...)
	}
	return append(b, "]}"...)
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}
