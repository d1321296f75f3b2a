package top

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// counterRate through promtool's PromQL engine, on one-minute scrapes (the
// shortest interval promtool's series loader takes here) and a 20-minute
// window ending at 40m, where a scrape failed just before either end of
// the window (a staleness marker at 39m, and at 20m):
//   - new: first exposed at 25m, its last sample 28 at 38m: the whole
//     value is its growth, 28 over the window's 1,200 s. An instant lookup
//     at 40m found only the marker and left the series out;
//   - old: exposed from 0m, growing 1 a minute, the scrape at 20m failed:
//     it is an old series and grows 1/60 per second. An instant lookup at
//     20m found the marker, took it for new and counted its whole total,
//     40 over 1,200 s.
func TestCounterRateAcrossAFailedScrape(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (Debian package prometheus; `make deps` installs it): %v", err)
	}
	expr := expand(counterRate("m", "fn"), "1200s")
	test := `tests:
  - interval: 1m
    input_series:
      - series: 'm{fn="new"}'
        values: '_x25 2+2x13 stale _'
      - series: 'm{fn="old"}'
        values: '0+1x19 stale 21+1x19'
    promql_expr_test:
      - expr: ` + strconv.Quote(expr) + `
        eval_time: 40m
        exp_samples:
          - labels: '{fn="new"}'
            value: 0.023333333333333334
          - labels: '{fn="old"}'
            value: 0.016666666666666666
`
	f := filepath.Join(t.TempDir(), "counter_rate_test.yml")
	if err := os.WriteFile(f, []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "test", "rules", f).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s\n%s", err, out, test)
	}
}
