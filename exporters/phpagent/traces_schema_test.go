package phpagent

import (
	"encoding/json"
	"slices"
	"testing"
)

// The field names of docs/raw-traces.md, by kind: what a line may hold and
// what it must. Nested lists name the fields of their elements.
var (
	schemaCommon = []string{"kind", "time", "level", "project", "host", "pool", "pid", "request_id", "correlation_id", "trace_id", "sapi", "method", "endpoint", "uri"}
	schemaFields = map[string][]string{
		"request": {"reasons", "status", "exit", "wall", "cpu", "mem_peak", "fatal", "sql_count", "sql_seconds", "sql_dropped", "query_fp",
			"sql", "errors", "errors_dropped", "profiler", "period", "stacks", "wall_fn", "truncated"},
		"abandoned":   {"reason", "seconds", "elapsed", "stack", "cpu", "mem"},
		"profile":     {"profiler", "wall", "cpu", "functions", "functions_dropped"},
		"fpm_slowlog": {"script", "seconds", "stack"},
		// The status page's worker, and the PHP agent's last progress when
		// it reported the request.
		"fpm_long_running": {"seconds", "script", "worker", "stack", "cpu", "mem"},
	}
	schemaRequired = map[string][]string{
		"request":          {"reasons", "wall"},
		"abandoned":        {"reason", "seconds"},
		"profile":          {"profiler", "wall", "functions"},
		"fpm_slowlog":      {"pool", "pid"},
		"fpm_long_running": {"pool", "pid", "seconds"},
	}
	schemaElements = map[string][]string{
		"request.sql":             {"q", "query_fp", "d", "rows", "err", "trunc", "site"},
		"request.errors":          {"type", "msg", "file", "line"},
		"request.stacks":          {"s", "n"},
		"request.wall_fn":         {"n", "c", "s"},
		"profile.functions":       {"n", "self", "incl", "calls"},
		"fpm_slowlog.stack":       {"function", "file", "line"},
		"fpm_long_running.worker": {"state", "started", "requests", "content_length", "user"},
	}
)

// checkSchema decodes line and checks its field names against the schema
// of its kind.
func checkSchema(t *testing.T, name string, line []byte) {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(line, &obj); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	kind, _ := obj["kind"].(string)
	allowed, ok := schemaFields[kind]
	if !ok {
		t.Fatalf("%s: unknown kind %q", name, kind)
	}
	for _, f := range append([]string{"kind", "time", "level"}, schemaRequired[kind]...) {
		if _, ok := obj[f]; !ok {
			t.Errorf("%s: lacks %s", name, f)
		}
	}
	for f, v := range obj {
		if !slices.Contains(schemaCommon, f) && !slices.Contains(allowed, f) {
			t.Errorf("%s: field %q is not in the schema of %s", name, f, kind)
		}
		fields, nested := schemaElements[kind+"."+f]
		var elems []any
		switch v := v.(type) {
		case []any:
			elems = v
		case map[string]any:
			elems = []any{v}
		}
		for _, e := range elems {
			o, isObj := e.(map[string]any)
			if nested != isObj {
				t.Errorf("%s: %s holds %T", name, f, e)
				continue
			}
			for k := range o {
				if !slices.Contains(fields, k) {
					t.Errorf("%s: field %s.%s is not in the schema", name, f, k)
				}
			}
		}
	}
}
