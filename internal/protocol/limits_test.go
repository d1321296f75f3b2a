package protocol

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// limitConstants maps each key of testdata/protocol/limits.json to the
// constant the daemon enforces. The PHP agent's tests read the same file, so
// a limit changed on one side only fails a test on the other.
var limitConstants = map[string]float64{
	"max_datagram_bytes":   MaxDatagramSize,
	"max_project_bytes":    MaxProjectLen,
	"max_host_bytes":       MaxHostLen,
	"max_pool_bytes":       MaxPoolLen,
	"max_method_bytes":     MaxMethodLen,
	"max_cid_bytes":        MaxCIDLen,
	"max_uri_bytes":        MaxURILen,
	"max_endpoint_bytes":   MaxEndpointLen,
	"max_sql_statements":   MaxSQL,
	"max_sql_bytes":        MaxSQLTextLen,
	"max_function_bytes":   MaxFunctionLen,
	"max_functions":        MaxFunctions,
	"max_stacks":           MaxStacks,
	"max_wall":             MaxWall,
	"max_stack_bytes":      MaxCollapsedLen,
	"max_stack_frames":     MaxStackFrames,
	"max_errors":           MaxErrors,
	"max_error_type_bytes": MaxErrorTypeLen,
	"max_error_msg_bytes":  MaxErrorMsgLen,
	"max_error_file_bytes": MaxErrorFileLen,
	"max_profiler_bytes":   MaxProfilerLen,
	"max_truncated":        MaxTruncated,
	"max_count":            MaxCount,
	"max_period_seconds":   MaxPeriodSec,
	"max_exit_code":        MaxExitCode,
	"max_sites":            MaxSites,
	"max_site_frames":      MaxSiteFrames,
	"max_site_frame_bytes": MaxSiteFrameLen,
}

// limitsNotProtocol are keys of limits.json that describe something else
// than the wire protocol (the PHP agent's spool, the slow threshold both
// sides default to); other tests read them.
var limitsNotProtocol = map[string]bool{"spool": true, "traces": true}

func readLimits(t *testing.T) map[string]float64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "protocol", "limits.json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("cannot parse limits.json: %v", err)
	}
	limits := make(map[string]float64, len(raw))
	for k, v := range raw {
		if limitsNotProtocol[k] {
			continue
		}
		var n float64
		if err := json.Unmarshal(v, &n); err != nil {
			t.Errorf("limits.json %q: not a number: %s", k, v)
			continue
		}
		limits[k] = n
	}
	return limits
}

func TestLimitsFileMatchesConstants(t *testing.T) {
	limits := readLimits(t)
	for _, k := range sortedKeys(limits) {
		want, ok := limitConstants[k]
		if !ok {
			t.Errorf("limits.json has %q, which no constant of this package mirrors", k)
			continue
		}
		if got := limits[k]; got != want {
			t.Errorf("limits.json %q = %v; want %v (the Go constant)", k, got, want)
		}
	}
	for _, k := range sortedKeys(limitConstants) {
		if _, ok := limits[k]; !ok {
			t.Errorf("limits.json lacks %q", k)
		}
	}
}

// docLimitRow is a row of the "Limits" table of docs/protocol.md:
// | `key` | value | what it bounds |
var docLimitRow = regexp.MustCompile("^\\| `([a-z0-9_]+)` \\| ([0-9]+(?:\\.[0-9]+)?) \\|")

func TestLimitsFileMatchesDoc(t *testing.T) {
	limits := readLimits(t)
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "protocol.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]float64{}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Limits"
			continue
		}
		if !in {
			continue
		}
		m := docLimitRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if _, dup := doc[m[1]]; dup {
			t.Errorf("docs/protocol.md lists %q twice", m[1])
		}
		n, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatal(err)
		}
		doc[m[1]] = n
	}
	if len(doc) == 0 {
		t.Fatal(`docs/protocol.md has no "## Limits" table`)
	}
	for _, k := range sortedKeys(limits) {
		got, ok := doc[k]
		switch {
		case !ok:
			t.Errorf("docs/protocol.md Limits lacks %q", k)
		case got != limits[k]:
			t.Errorf("docs/protocol.md Limits %q = %v; want %v (limits.json)", k, got, limits[k])
		}
	}
	for _, k := range sortedKeys(doc) {
		if _, ok := limits[k]; !ok {
			t.Errorf("docs/protocol.md Limits lists %q, which limits.json lacks", k)
		}
	}
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
