package mixin

import (
	"encoding/json"
	"net/url"
	"strings"

	"github.com/bitville/bitville-apm/internal/logql"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/logs"
	"github.com/grafana/grafana-foundation-sdk/go/loki"
)

// LokiUID is the uid of the Loki data source the dashboards preselect:
// the one compose/ provisions. Any other is picked in the loki variable.
const LokiUID = "loki"

var lokiDatasource = common.DataSourceRef{Type: ptr("loki"), Uid: ptr("${loki}")}

// lokiVar picks the Loki that holds the raw traces (docs/raw-traces.md).
func lokiVar() *dashboard.DatasourceVariableBuilder {
	return dashboard.NewDatasourceVariableBuilder("loki").Label("Loki").Type("loki").
		Current(dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{String: ptr("Loki")}, Value: dashboard.StringOrArrayOfString{String: ptr(LokiUID)}})
}

// correlationVar is a text box for one correlation id.
func correlationVar() *dashboard.TextBoxVariableBuilder {
	return dashboard.NewTextBoxVariableBuilder("correlation_id").Label("correlation_id").
		Description("A correlation id (the PHP agent's, or the X-Correlation-Id header the request came with): the panel below lists every raw trace of it.")
}

// rawTraces is a logs panel of one LogQL search (internal/logql), newest
// first.
func rawTraces(title, desc string, w, h uint32, expr string) *logs.PanelBuilder {
	return logs.NewPanelBuilder().Title(title).Description(desc).Span(w).Height(h).
		Datasource(lokiDatasource).
		Targets([]cog.Builder[variants.Dataquery]{loki.NewDataqueryBuilder().Expr(expr).RefId("A").
			QueryType(string(loki.LokiQueryTypeRange)).MaxLines(100).Datasource(lokiDatasource)}).
		ShowTime(true).WrapLogMessage(false).PrettifyLogMessage(false).EnableLogDetails(true).
		SortOrder(common.LogsSortOrderDescending).DedupStrategy(common.LogsDedupStrategyNone)
}

// explore is a data link to Grafana Explore running the LogQL search expr
// on the dashboard's Loki over the dashboard's time range. The search may
// hold ${…} variables (the clicked row's fields): Grafana fills them in
// and URL-encodes their values; everything else is encoded here.
func explore(title, expr string) cog.Builder[dashboard.DashboardLink] {
	panes := map[string]any{"bv": map[string]any{
		"datasource": "${loki}",
		"queries": []map[string]any{{
			"refId": "A", "expr": expr, "queryType": "range",
			"datasource": map[string]string{"type": "loki", "uid": "${loki}"},
		}},
		"range": map[string]string{"from": "${__from}", "to": "${__to}"},
	}}
	b, _ := json.Marshal(panes) // maps of strings always marshal
	return dashboard.NewDashboardLinkBuilder(title).Url("/explore?schemaVersion=1&orgId=1&panes=" + escapeKeepingVars(string(b))).TargetBlank(true)
}

// escapeKeepingVars query-escapes s but for the ${…} variables in it.
func escapeKeepingVars(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			break
		}
		b.WriteString(url.QueryEscape(s[:i]))
		b.WriteString(s[i : i+j+1])
		s = s[i+j+1:]
	}
	b.WriteString(url.QueryEscape(s))
	return b.String()
}

// The Explore links of the tables, with the clicked row's fields.
var (
	exploreEndpoint = explore("Slowest requests of ${__data.fields.endpoint} (Loki)",
		logql.SlowestRequests(logql.Var("__data.fields.project"), logql.Var("__data.fields.endpoint")))
	exploreQuery = explore("Requests that ran ${__data.fields.query_fp} (Loki)",
		logql.RequestsOfQuery(logql.Var("project"), logql.Var("__data.fields.query_fp")))
)
