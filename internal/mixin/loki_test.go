package mixin

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/bitville/bitville-apm/internal/logql"
)

// The Loki panels run the searches of internal/logql, on the Loki data
// source; Queries (what the end-to-end test runs against Prometheus)
// leaves them out, and every panel query is in one list or the other.
func TestLokiPanels(t *testing.T) {
	ds, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		UIDEndpoint + "/Slowest requests of this endpoint": logql.SlowestRequests(logql.Var("project"), logql.Var("endpoint")),
		UIDEndpoint + "/Failed requests":                   logql.FailedRequests(logql.Var("project"), logql.Var("endpoint")),
		UIDEndpoint + "/Everything of one correlation id":  logql.Correlation(logql.Var("correlation_id")),
	}
	lq, err := LokiQueries(ds)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, q := range lq {
		got[q.Dashboard+"/"+q.Panel] = q.Expr
		if err := logql.Check(q.Expr); err != nil {
			t.Errorf("%s/%s: %v\n  %s", q.Dashboard, q.Panel, err, q.Expr)
		}
		if q.Type != "loki" {
			t.Errorf("%s/%s: data source type %q", q.Dashboard, q.Panel, q.Type)
		}
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %q; want %q", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d Loki panel queries; want %d: %v", len(got), len(want), got)
	}
	pq, err := Queries(ds)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range pq {
		if q.Type != "prometheus" || strings.Contains(q.Expr, "job=\"bitville-apm-") {
			t.Errorf("%s/%s: a non-Prometheus query among Queries: %s", q.Dashboard, q.Panel, q.Expr)
		}
	}
	total := 0
	for _, d := range ds {
		for _, p := range d.Dashboard.Panels {
			if p.Panel != nil {
				total += len(p.Panel.Targets)
			}
		}
	}
	if len(pq)+len(lq) != total {
		t.Errorf("%d Prometheus + %d Loki queries; the dashboards have %d", len(pq), len(lq), total)
	}
}

// checkExploreLink checks a data link to Explore: a Loki query of
// internal/logql on the loki variable, over the dashboard's time range,
// with only variables the dashboard has or the clicked row's fields.
func checkExploreLink(t *testing.T, where, link string, vars map[string]bool) {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	var panes map[string]struct {
		Datasource string `json:"datasource"`
		Queries    []struct {
			Expr       string `json:"expr"`
			Datasource struct {
				Type string `json:"type"`
				UID  string `json:"uid"`
			} `json:"datasource"`
		} `json:"queries"`
		Range struct{ From, To string } `json:"range"`
	}
	if err := json.Unmarshal([]byte(u.Query().Get("panes")), &panes); err != nil || len(panes) != 1 {
		t.Errorf("%s: panes of %s: %v", where, link, err)
		return
	}
	known := []string{
		logql.SlowestRequests(logql.Var("__data.fields.project"), logql.Var("__data.fields.endpoint")),
		logql.RequestsOfQuery(logql.Var("project"), logql.Var("__data.fields.query_fp")),
	}
	for _, p := range panes {
		if p.Datasource != "${loki}" || p.Range.From != "${__from}" || p.Range.To != "${__to}" || len(p.Queries) != 1 {
			t.Errorf("%s: Explore pane %+v; want one query on ${loki} over ${__from}..${__to}", where, p)
			continue
		}
		q := p.Queries[0]
		if q.Datasource.Type != "loki" || q.Datasource.UID != "${loki}" {
			t.Errorf("%s: Explore query data source %+v", where, q.Datasource)
		}
		if !slices.Contains(known, q.Expr) {
			t.Errorf("%s: Explore query %q is none of internal/logql's", where, q.Expr)
		}
		if err := logql.Check(q.Expr); err != nil {
			t.Errorf("%s: %v", where, err)
		}
		for _, m := range variableRe.FindAllStringSubmatch(q.Expr, -1) {
			if !vars[m[1]] && m[1] != "__data" {
				t.Errorf("%s: $%s is not a variable of the dashboard: %s", where, m[1], q.Expr)
			}
		}
	}
}

// The alerts with a culprit in the raw traces carry its LogQL search in
// logs; filled in, it is well-formed (alerts/tests has the values).
func TestAlertLogs(t *testing.T) {
	want := []string{"BitvilleLoadSpike", "BitvilleFPMMaxChildrenReached", "BitvilleFPMListenQueue", "BitvilleRequestsAbandoned",
		"BitvilleEndpointSlow", "BitvillePgActiveSessionsHigh", "BitvillePgLockWaits", "BitvillePgLongTransaction", "BitvillePgIdleInTransaction"}
	for _, g := range Alerts(DefaultConfig()).Groups {
		for _, r := range g.Rules {
			s, ok := r.Annotations["logs"]
			if ok != slices.Contains(want, r.Alert) {
				t.Errorf("%s: logs annotation %v; want %v", r.Alert, ok, !ok)
			}
			if !ok {
				continue
			}
			// A search of a query's result: the body of its range.
			if _, body, found := strings.Cut(s, "{{ range . }}"); found {
				s, _, _ = strings.Cut(body, "{{ end }}")
			}
			if err := logql.Check(s); err != nil {
				t.Errorf("%s: %v\n  %s", r.Alert, err, s)
			}
		}
	}
}
