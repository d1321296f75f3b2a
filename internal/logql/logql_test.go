package logql

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// every search, with the three kinds of values.
func searches(v func(name, example string) Value) map[string]string {
	p, e := v("project", "shop"), v("endpoint", "GET /orders/{id}")
	return map[string]string{
		"SlowestRequests":    SlowestRequests(p, e),
		"FailedRequests":     FailedRequests(p, e),
		"FailedWith":         FailedWith(p, v("type", "PDOException")),
		"Correlation":        Correlation(v("correlation_id", "c0ffee")),
		"Trace":              Trace(v("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")),
		"Request":            Request(v("request_id", "r-1")),
		"RequestsOfQuery":    RequestsOfQuery(p, v("query_fp", "a1a1a1a1a1a1a1a1")),
		"CallSites":          CallSites(p, e),
		"Abandoned":          Abandoned(p, e),
		"Profiles":           Profiles(p, e),
		"ForcedRequests":     ForcedRequests(p, e),
		"FPMReports":         FPMReports(p),
		"LockTrees":          LockTrees(v("server", "db1:5432/shop"), v("datname", "shop")),
		"LockTreesBlockedBy": LockTreesBlockedBy(e),
		"Activity":           Activity(v("server", "db1:5432/shop")),
	}
}

func TestEverySearchIsWellFormed(t *testing.T) {
	styles := map[string]func(name, example string) Value{
		"literal":  func(_, ex string) Value { return Is(ex) },
		"any":      func(_, _ string) Value { return Is("") },
		"odd":      func(_, _ string) Value { return Is("a\"b\\c`d\n{e}|f") },
		"grafana":  func(name, _ string) Value { return Var(name) },
		"template": func(name, _ string) Value { return Label(name) },
	}
	for style, v := range styles {
		for name, q := range searches(v) {
			t.Run(style+"/"+name, func(t *testing.T) {
				if err := Check(q); err != nil {
					t.Errorf("%s\n  %v", q, err)
				}
			})
		}
	}
}

func TestSearches(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{SlowestRequests(Is("shop"), Is("GET /orders/{id}")),
			`{job="bitville-apm-agent", project="shop", kind="request"} |~ ` + "`" + `"reasons":\[[^\]]*"slow"` + "`" + ` | json | endpoint="GET /orders/{id}"`},
		{SlowestRequests(Var("project"), Var("endpoint")),
			`{job="bitville-apm-agent", project=~"${project}", kind="request"} |~ ` + "`" + `"reasons":\[[^\]]*"slow"` + "`" + ` | json | endpoint=~"${endpoint}"`},
		{SlowestRequests(Label("project"), Label("endpoint")),
			`{job="bitville-apm-agent", project={{ $labels.project | printf "%q" }}, kind="request"} |~ ` + "`" + `"reasons":\[[^\]]*"slow"` + "`" + ` | json | endpoint={{ $labels.endpoint | printf "%q" }}`},
		{FailedRequests(Is(""), Is(`say "hi"\`)),
			`{job="bitville-apm-agent", kind="request", level="error"} | json | endpoint="say \"hi\"\\"`},
		{Correlation(Is("c0ffee")), `{job=~"bitville-apm-agent|bitville-apm-pg-exporter"} | correlation_id="c0ffee"`},
		{RequestsOfQuery(Is("shop"), Is("a1")), `{job="bitville-apm-agent", project="shop", kind="request"} |= "\"query_fp\":\"a1\""`},
		{RequestsOfQuery(Var("project"), Var("query_fp")), `{job="bitville-apm-agent", project=~"${project}", kind="request"} |~ "\"query_fp\":\"${query_fp}\""`},
		{Abandoned(Is("shop"), Is("")), `{job="bitville-apm-agent", project="shop", kind="abandoned"}`},
		{ForcedRequests(Is("shop"), Is("")),
			`{job="bitville-apm-agent", project="shop", kind="request"} |~ ` + "`" + `"reasons":\[[^\]]*"forced"` + "`"},
		{LockTrees(Label("server"), Label("datname")),
			`{job="bitville-apm-pg-exporter", kind="pg_locks"} | json | server={{ $labels.server | printf "%q" }} | datname={{ $labels.datname | printf "%q" }}`},
	} {
		if tc.got != tc.want {
			t.Errorf("got  %s\nwant %s", tc.got, tc.want)
		}
	}
}

// The line filters match the lines the agent writes: its golden request
// line was sent for the reasons failed, slow and forced, and carries call
// sites; its golden profile line was sent for none.
func TestLineFiltersMatchTheAgentsLines(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("../../exporters/phpagent/testdata/events", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	request, profile := read("request.json"), read("profile.json")
	for _, tc := range []struct {
		name, re string
	}{
		{"slow", slowRequest},
		{"forced", forcedRequest},
	} {
		re := regexp.MustCompile(tc.re)
		if !re.MatchString(request) {
			t.Errorf("%s: %s does not match the golden request line", tc.name, tc.re)
		}
		if re.MatchString(profile) {
			t.Errorf("%s: %s matches the golden profile line", tc.name, tc.re)
		}
	}
	if !strings.Contains(request, `"site":[`) {
		t.Errorf("CallSites' filter %q does not match the golden request line", `"site":[`)
	}
}

func TestCheckRejects(t *testing.T) {
	for _, q := range []string{
		``,
		`{job="bitville-apm-agent"`,
		`{job="bitville-apm-agent"}}`,
		`{job="bitville-apm-agent} | json`,
		`{job="bitville-apm-agent", endpoint="GET /"}`,
		`{project=~".*"}`,
		`{project=""}`,
		`{project=~"${project}"}`,
		`{job="a"} | json | wall`,
		`{job="a"} |~ "("`,
		`{job="a"} | line_format "{{.x}}"`,
		`{job="a"} json`,
		`job="a"`,
	} {
		if err := Check(q); err == nil {
			t.Errorf("Check(%q) accepted it", q)
		}
	}
	for _, q := range []string{
		`{job="a"}`,
		`{job=~"a|b", project!="x"} | correlation_id="c" | json | wall > 1.5 | status >= 500`,
	} {
		if err := Check(q); err != nil {
			t.Errorf("Check(%q): %v", q, err)
		}
	}
}

// A value is escaped once, as Go and LogQL read strings.
func TestQuote(t *testing.T) {
	for in, want := range map[string]string{`a`: `"a"`, `a"b`: `"a\"b"`, `a\b`: `"a\\b"`, "a\nb": `"a\nb"`} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s; want %s", in, got, want)
		}
	}
	if !strings.Contains(FailedRequests(Is("p"), Is(`x"`)), `endpoint="x\""`) {
		t.Error("an endpoint with a quote is not escaped")
	}
}

func ExampleSlowestRequests() {
	fmt.Println(SlowestRequests(Is("shop"), Is("GET /orders/{id}")))
	// Output: {job="bitville-apm-agent", project="shop", kind="request"} |~ `"reasons":\[[^\]]*"slow"` | json | endpoint="GET /orders/{id}"
}
