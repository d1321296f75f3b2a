package mixin

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// PanelQuery is one query of a dashboard panel.
type PanelQuery struct {
	Dashboard string // the dashboard's uid
	Panel     string // the panel's title
	Expr      string
	Instant   bool   // an instant query (tables); else a range query
	Type      string // the data source type: prometheus or loki
}

// Queries lists every PromQL panel query of ds, in dashboard and panel
// order: what Prometheus can run. LokiQueries lists the others.
func Queries(ds []Dashboard) ([]PanelQuery, error) {
	return queriesOf(ds, "prometheus")
}

// LokiQueries lists every LogQL panel query of ds (the raw traces).
func LokiQueries(ds []Dashboard) ([]PanelQuery, error) {
	return queriesOf(ds, "loki")
}

func queriesOf(ds []Dashboard, typ string) ([]PanelQuery, error) {
	var out []PanelQuery
	for _, d := range ds {
		b, err := json.Marshal(d.Dashboard)
		if err != nil {
			return nil, err
		}
		var doc struct {
			UID    string `json:"uid"`
			Panels []struct {
				Title   string `json:"title"`
				Type    string `json:"type"`
				Targets []struct {
					Expr       string `json:"expr"`
					Instant    bool   `json:"instant"`
					Datasource struct {
						Type string `json:"type"`
					} `json:"datasource"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, err
		}
		for _, p := range doc.Panels {
			for _, t := range p.Targets {
				if t.Datasource.Type != typ {
					continue
				}
				out = append(out, PanelQuery{Dashboard: doc.UID, Panel: p.Title, Expr: t.Expr, Instant: t.Instant, Type: t.Datasource.Type})
			}
		}
	}
	return out, nil
}

// Grafana's global variables, as a query of the dashboard's default
// (last hour) would see them at a 15 s scrape interval.
var grafanaGlobals = map[string]string{
	"$__rate_interval": "1m",
	"$__interval":      "15s",
	"$__range":         "1h",
}

// Expand replaces the dashboard variables in expr: Grafana's own
// ($__rate_interval, $__interval, $__range, unless overridden in vars) and
// $name for each of vars (a regex for the =~ matchers the dashboards use;
// ".*" stands for All). A variable left over is an error.
func Expand(expr string, vars map[string]string) (string, error) {
	all := map[string]string{}
	for k, v := range grafanaGlobals {
		all[k] = v
	}
	for k, v := range vars {
		if strings.HasPrefix(k, "$") {
			all[k] = v
		} else {
			all["$"+k] = v
		}
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	// Longest first: $query_fp before a hypothetical $query.
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	for _, k := range keys {
		expr = strings.ReplaceAll(expr, k, all[k])
	}
	if i := strings.IndexByte(expr, '$'); i >= 0 {
		return "", fmt.Errorf("unexpanded variable at %q", expr[i:])
	}
	return expr, nil
}
