package mixin

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Dashboard UIDs: stable, so links between them and from alerts hold.
const (
	UIDTriage   = "bitville-triage"
	UIDEndpoint = "bitville-endpoint"
	UIDSQL      = "bitville-sql"
	UIDPostgres = "bitville-postgres"
	UIDAgent    = "bitville-agent"
)

// Dashboard is one generated dashboard and the file it goes to.
type Dashboard struct {
	File      string // under dashboards/
	Dashboard dashboard.Dashboard
}

// JSON renders the dashboard as committed (indented, newline at the end).
func (d Dashboard) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(d.Dashboard, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Dashboards builds every dashboard.
func Dashboards() ([]Dashboard, error) {
	builders := []struct {
		file string
		b    *dashboard.DashboardBuilder
	}{
		{"triage.json", triage()},
		{"endpoint.json", endpointDashboard()},
		{"sql.json", sqlDashboard()},
		{"postgres.json", postgresDashboard()},
		{"agent.json", agentDashboard()},
	}
	var out []Dashboard
	for _, x := range builders {
		d, err := x.b.Build()
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", x.file, err)
		}
		out = append(out, Dashboard{File: x.file, Dashboard: d})
	}
	return out, nil
}

func ptr[T any](v T) *T { return &v }

var datasource = common.DataSourceRef{Type: ptr("prometheus"), Uid: ptr("${datasource}")}

// ---- variables ---------------------------------------------------------------

func datasourceVar() *dashboard.DatasourceVariableBuilder {
	return dashboard.NewDatasourceVariableBuilder("datasource").Label("Prometheus").Type("prometheus")
}

// labelVar is a query variable over label_values(series, label): multi
// with All (matching .*) unless single.
func labelVar(name, label, series string, single bool) *dashboard.QueryVariableBuilder {
	q := fmt.Sprintf("label_values(%s, %s)", series, label)
	v := dashboard.NewQueryVariableBuilder(name).Label(label).
		Query(dashboard.StringOrMap{String: ptr(q)}).Definition(q).
		Datasource(datasource).Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
	if !single {
		v = v.Multi(true).IncludeAll(true).AllValue(".*")
	}
	return v
}

func newDashboard(uid, title, desc string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).Uid(uid).Description(desc).
		Tags([]string{"bitville-apm"}).Refresh("30s").Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Link(dashboard.NewDashboardLinkBuilder("Bitville APM").Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{"bitville-apm"}).AsDropdown(true).IncludeVars(true).KeepTime(true)).
		WithVariable(datasourceVar()).WithVariable(lokiVar())
}

// ---- queries and panels ----------------------------------------------------------

// q is one query of a panel.
type q struct {
	expr, legend string
	table        bool // instant query, table format
	heatmap      bool // heatmap format
}

func (t q) builder(ref string) *prometheus.DataqueryBuilder {
	b := prometheus.NewDataqueryBuilder().Expr(t.expr).RefId(ref).Datasource(datasource)
	switch {
	case t.table:
		b = b.Instant().Format(prometheus.PromQueryFormatTable)
	case t.heatmap:
		b = b.Format(prometheus.PromQueryFormatHeatmap).LegendFormat("{{le}}")
	default:
		b = b.Range()
		if t.legend != "" {
			b = b.LegendFormat(t.legend)
		}
	}
	return b
}

func targets(qs []q) []cog.Builder[variants.Dataquery] {
	out := make([]cog.Builder[variants.Dataquery], len(qs))
	for i, t := range qs {
		out[i] = t.builder(string(rune('A' + i)))
	}
	return out
}

func graph(title, desc, unit string, w, h uint32, qs ...q) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().Title(title).Description(desc).Unit(unit).Span(w).Height(h).
		Datasource(datasource).Targets(targets(qs)).Min(0).FillOpacity(10).
		Legend(common.NewVizLegendOptionsBuilder().DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementBottom).ShowLegend(true).Calcs([]string{"mean", "max", "lastNotNull"}))
}

func stacked(p *timeseries.PanelBuilder) *timeseries.PanelBuilder {
	return p.Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).FillOpacity(40)
}

func single(title, desc, unit string, w, h uint32, qs ...q) *stat.PanelBuilder {
	return stat.NewPanelBuilder().Title(title).Description(desc).Unit(unit).Span(w).Height(h).
		Datasource(datasource).Targets(targets(qs))
}

// link is a data link to a drill-down dashboard, passing the common
// variables and the clicked row's key.
func link(title, uid, param, field string) cog.Builder[dashboard.DashboardLink] {
	url := "/d/" + uid + "/" + uid + "?${__url_time_range}&${datasource:queryparam}&${project:queryparam}&${instance:queryparam}&var-" + param + "=${__data.fields." + field + "}"
	return dashboard.NewDashboardLinkBuilder(title).Url(url)
}

// top is a table of an instant query over the dashboard's range, its
// value column named valueName, each row linking to a drill-down.
func top(title, desc, unit, valueName string, w, h uint32, expr string, links ...cog.Builder[dashboard.DashboardLink]) *table.PanelBuilder {
	p := table.NewPanelBuilder().Title(title).Description(desc).Span(w).Height(h).
		Datasource(datasource).Targets(targets([]q{{expr: expr, table: true}}))
	if valueName == "" { // an info metric: the labels are the data
		p = p.WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
			"excludeByName": map[string]bool{"Time": true, "Value": true},
		}})
	} else {
		p = p.WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
			"excludeByName": map[string]bool{"Time": true},
			"renameByName":  map[string]string{"Value": valueName},
		}}).
			SortBy([]cog.Builder[common.TableSortByFieldState]{common.NewTableSortByFieldStateBuilder().DisplayName(valueName).Desc(true)}).
			OverrideByName(valueName, []dashboard.DynamicConfigValue{{Id: "unit", Value: unit}})
	}
	if len(links) > 0 {
		p = p.DataLinks(links)
	}
	return p
}

func row(title string) *dashboard.RowBuilder { return dashboard.NewRowBuilder(title) }

// sel is a label matcher list from "name=~var" pairs: each name matches
// the variable of the same name ($name).
func sel(names ...string) string {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf(`%s=~"$%s"`, n, n)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// withText joins a by-query_fp vector to the normalised text.
func withText(expr string) string {
	return expr + ` * on (query_fp) group_left (query) ` + RuleQueryInfo
}
