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
	tenantOf      func(project string) string // nil: one tenant (or none) for every push
	poster        *httpPoster
}

// TenantProject in --loki.tenant stands for each event's project: the
// events of a batch are pushed once per tenant, each with its own
// X-Scope-OrgID (pushgw's tenant per project).
const TenantProject = "{project}"

// lokiTenantHeader is the header that names the Loki tenant.
const lokiTenantHeader = "X-Scope-OrgID"

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
	switch tenant := cfg.LokiTenant; {
	case strings.Contains(tenant, TenantProject):
		l.tenantOf = func(project string) string { return strings.ReplaceAll(tenant, TenantProject, project) }
	case tenant != "":
		h.Set(lokiTenantHeader, tenant)
	}
	if cfg.LokiAuthFile != "" {
		auth, err := AuthHeader(cfg.LokiAuthFile)
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
	if l.tenantOf == nil {
		return l.send(ctx, batch, "")
	}
	// One push per tenant. A failure worth retrying fails the whole
	// batch, so the tenants pushed before it get their events again:
	// Loki keeps one of two entries equal in stream, time and line.
	for _, part := range byProject(batch) {
		if err := l.send(ctx, part, l.tenantOf(part[0].Project)); err != nil {
			return err
		}
	}
	return nil
}

// send pushes events in one request, with tenant as X-Scope-OrgID when
// it is not "".
func (l *Loki) send(ctx context.Context, events []Event, tenant string) error {
	var extra http.Header
	if tenant != "" {
		extra = http.Header{lokiTenantHeader: {tenant}}
	}
	streams := l.group(events)
	var err error
	if l.json {
		err = l.poster.postWith(ctx, lokiJSON(streams), "application/json", "", extra)
	} else {
		var body []byte
		if body, err = lokiProtobuf(streams); err != nil {
			return &PermanentError{Err: fmt.Errorf("cannot encode the Loki push: %w", err)}
		}
		err = l.poster.postWith(ctx, body, "application/x-protobuf", "", extra)
	}
	if err != nil {
		if tenant != "" {
			return fmt.Errorf("cannot push %d events of tenant %q to Loki: %w", len(events), tenant, err)
		}
		return fmt.Errorf("cannot push %d events to Loki: %w", len(events), err)
	}
	return nil
}

// byProject splits batch by project, keeping the order of events within
// a project and of the projects' first events.
func byProject(batch []Event) [][]Event {
	index := map[string]int{}
	var parts [][]Event
	for _, e := range batch {
		i, ok := index[e.Project]
		if !ok {
			i = len(parts)
			index[e.Project] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], e)
	}
	return parts
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

// streamKey is what tells the streams of a batch apart.
type streamKey struct{ job, instance, project, kind, level string }

// group splits a batch into streams in the order each first appears.
func (l *Loki) group(batch []Event) []lokiStream {
	index := map[streamKey]int{}
	var streams []lokiStream
	for _, e := range batch {
		instance, job := origin(e, l.instance, l.job)
		k := streamKey{job, instance, e.Project, e.Kind, e.Level}
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
	instance, job := origin(e, l.instance, l.job)
	return nonEmpty( // sorted by name
		push.LabelAdapter{Name: "instance", Value: instance},
		push.LabelAdapter{Name: "job", Value: job},
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
