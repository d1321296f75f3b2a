package phpagent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReplaySpool(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	end := func(id string) string {
		return `{"v":1,"type":"end","id":"` + id + `","pid":7,"project":"shop","ts":1764294512.2,"method":"GET","endpoint":"GET /spooled","started":1764294512.1,"status":200,"wall":0.1}`
	}
	write("1764294512000000001-7-aaaaaaaa.json", end("a"))
	write("1764294512000000002-7-bbbbbbbb.json", end("b"))
	write("1764294512000000003-7-cccccccc.json", `{"v":1,"type":"start","id":"c","pid":7,"project":"shop","ts":1764294512.3,"method":"GET","endpoint":"GET /spooled","started":1764294512.3}`)
	write("1764294512000000004-7-dddddddd.json", `{"v":1,"type":"end"`)
	write("1764294512000000005-7-eeeeeeee.json", `{"v":1,"pad":"`+strings.Repeat("x", 70000)+`"}`)
	write("1764294512000000006-7-ffffffff.json.tmp", end("f")) // still being written
	write("notes.txt", "not a spool file")

	a, reg := newTestAgent(t, nil)
	st, err := a.ReplaySpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := (SpoolStats{Replayed: 2, Skipped: 1, Invalid: 2}); st != want {
		t.Errorf("got %+v; want %+v", st, want)
	}
	if got := series(t, reg, "bitville_php_requests_total")[`bitville_php_requests_total{endpoint=GET /spooled,method=GET,project=shop,status=2xx}`]; got != 2 {
		t.Errorf("got %v requests from the spool; want 2", got)
	}
	if got := a.inflight.Len(); got != 0 {
		t.Errorf("got %d in flight; want 0 (a spooled start is not replayed)", got)
	}
	if got := series(t, reg, "bitville_agent_spool_files_total")[`bitville_agent_spool_files_total{result=invalid}`]; got != 2 {
		t.Errorf("got %v invalid spool files counted; want 2", got)
	}
	left, _ := os.ReadDir(dir)
	var names []string
	for _, e := range left {
		names = append(names, e.Name())
	}
	if len(names) != 2 || names[0] != "1764294512000000006-7-ffffffff.json.tmp" || names[1] != "notes.txt" {
		t.Errorf("got %q left; want only the .tmp file and the unrelated file", names)
	}

	// A second replay finds nothing; a missing dir is not an error.
	if st, err := a.ReplaySpool(dir); err != nil || st != (SpoolStats{}) {
		t.Errorf("got %+v, %v on the second replay; want nothing", st, err)
	}
	if _, err := a.ReplaySpool(filepath.Join(dir, "absent")); err != nil {
		t.Errorf("got %v for a missing dir; want nil", err)
	}
}
