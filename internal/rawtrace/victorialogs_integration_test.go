package rawtrace

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/stack"
)

// TestVictoriaLogsIngestsLokiPushes pushes with the Loki sink, in both
// formats, to a real VictoriaLogs through its Loki endpoint and reads the
// events back by correlation id. It is skipped when victoria-logs is not
// installed, except in CI, where that is a failure.
func TestVictoriaLogsIngestsLokiPushes(t *testing.T) {
	if _, err := stack.VictoriaLogsBinary(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vl, err := stack.StartVictoriaLogs(ctx, stack.VictoriaLogsConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = vl.Stop() }()

	for _, format := range []string{LokiFormatProtobuf, LokiFormatJSON} {
		t.Run(format, func(t *testing.T) {
			o := SinkOptions{Job: "bitville-apm-agent", Instance: `web "1"`, Version: "test"}
			l, err := NewLoki(Config{LokiURL: vl.PushURL(), LokiFormat: format}, o)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			cid := fmt.Sprintf("cid-%s-%d", format, time.Now().UnixNano())
			now := time.Now().UTC()
			batch := []Event{
				{Kind: "request", Level: LevelError, Project: "shop", Time: now, Summary: "GET /a 500",
					IDs:  IDs{CorrelationID: cid, TraceID: "trace-1", RequestID: "req-1", QueryFP: "fp-1"},
					Line: json.RawMessage(`{"kind":"request","level":"error","project":"shop","status":500,"endpoint":"GET /a"}`)},
				{Kind: "pg_locks", Level: LevelWarning, Project: "postgres", Time: now.Add(time.Millisecond), Summary: "lock",
					IDs:  IDs{CorrelationID: cid, QueryFP: "fp-2"},
					Line: json.RawMessage(`{"kind":"pg_locks","level":"warning","project":"postgres","server":"db:5432/shop"}`)},
			}
			if err := l.Send(ctx, batch); err != nil {
				t.Fatalf("Send: %v", err)
			}
			var got []map[string]string
			for deadline := time.Now().Add(10 * time.Second); len(got) < len(batch); time.Sleep(100 * time.Millisecond) {
				if got, err = vl.Query(ctx, fmt.Sprintf(`correlation_id:%q | sort by (_time)`, cid)); err != nil {
					t.Fatal(err)
				}
				if time.Now().After(deadline) {
					t.Fatalf("query by correlation_id %s: got %v; want %d entries", cid, got, len(batch))
				}
			}
			want := []map[string]string{
				{"job": o.Job, "instance": o.Instance, "project": "shop", "kind": "request", "level": "error",
					"correlation_id": cid, "trace_id": "trace-1", "request_id": "req-1", "query_fp": "fp-1",
					"status": "500", "endpoint": "GET /a"},
				{"job": o.Job, "instance": o.Instance, "project": "postgres", "kind": "pg_locks", "level": "warning",
					"correlation_id": cid, "query_fp": "fp-2", "server": "db:5432/shop"},
			}
			if len(got) != len(want) {
				t.Fatalf("got %d entries; want %d: %v", len(got), len(want), got)
			}
			for i := range want {
				for k, v := range want[i] {
					if got[i][k] != v {
						t.Errorf("entry %d field %s = %q; want %q (entry %v)", i, k, got[i][k], v, got[i])
					}
				}
				if _, ok := got[i]["trace_id"]; i == 1 && ok {
					t.Errorf("entry %d has trace_id %q; want none (empty IDs are not sent)", i, got[i]["trace_id"])
				}
			}
		})
	}
}
