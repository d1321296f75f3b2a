package stack

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// needVictoriaLogs skips the test when victoria-logs is not installed,
// except in CI, where the missing binary is a failure.
func needVictoriaLogs(t *testing.T) {
	t.Helper()
	if _, err := VictoriaLogsBinary(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

func TestVictoriaLogsRestart(t *testing.T) {
	needVictoriaLogs(t)
	dir := t.TempDir()
	v, err := StartVictoriaLogs(startCtx(t), VictoriaLogsConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = v.Stop() }()

	ts := time.Now().UnixNano()
	body := fmt.Sprintf(`{"streams":[{"stream":{"job":"stack-test"},"values":[["%d","{\"kind\":\"probe\",\"n\":\"1\"}",{"trace_id":"t-%d"}]]}]}`, ts, ts)
	resp, err := http.Post(v.PushURL(), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("push: HTTP %d; want 2xx", resp.StatusCode)
	}
	query := fmt.Sprintf(`trace_id:"t-%d"`, ts)
	want := func(v *VictoriaLogs) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := v.Query(startCtx(t), query)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 1 {
				if got[0]["job"] != "stack-test" || got[0]["kind"] != "probe" {
					t.Errorf("got %v; want job stack-test, kind probe", got[0])
				}
				return
			}
			if len(got) > 1 || time.Now().After(deadline) {
				t.Fatalf("query %s: got %v; want one entry", query, got)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	want(v)

	port := v.Port
	if err := v.Stop(); err != nil {
		t.Fatal(err)
	}
	v, err = StartVictoriaLogs(startCtx(t), VictoriaLogsConfig{Dir: dir, Port: port})
	if err != nil {
		t.Fatalf("second start on the same directory and port: %v", err)
	}
	if v.Port != port {
		t.Errorf("restarted on port %d; want %d", v.Port, port)
	}
	want(v)
}
