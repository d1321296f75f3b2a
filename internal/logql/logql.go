// Package logql writes every LogQL search of the raw traces
// (docs/raw-traces.md): the ones `bitville-apm top` prints, the
// dashboards' Loki panels and data links, and the alerts' logs
// annotations. One place, so that a search reads the same wherever it
// shows up and changes with the event schema in one commit.
//
// A search takes its values as Values: a literal (escaped here), a
// Grafana variable or an alert template. Stream selectors use only the
// stream labels the sinks set (job, project, instance, kind, level); the
// ids (correlation_id, trace_id, request_id, query_fp) are structured
// metadata, filtered after the selector; the other fields are read from
// the JSON line.
package logql

import (
	"encoding/json"
	"strconv"
	"strings"
)

// The job label of each producer.
const (
	JobAgent      = "bitville-apm-agent"
	JobPgExporter = "bitville-apm-pg-exporter"
)

// The kind label of each event.
const (
	KindRequest        = "request"
	KindAbandoned      = "abandoned"
	KindProfile        = "profile"
	KindFPMSlowlog     = "fpm_slowlog"
	KindFPMLongRunning = "fpm_long_running"
	KindPgLocks        = "pg_locks"
	KindPgActivity     = "pg_activity"
)

// StreamLabels are the only labels of an event's stream.
var StreamLabels = []string{"job", "project", "instance", "kind", "level"}

type valueKind uint8

const (
	literal  valueKind = iota // an exact value; "" = any
	variable                  // a Grafana variable, matched as a regex
	template                  // an alert label, filled in by the alert's template
)

// Value is what a search compares a label or field with.
type Value struct {
	kind valueKind
	s    string
}

// Is is the exact value s, escaped for a LogQL string. Is("") matches
// anything: the matcher is left out.
func Is(s string) Value { return Value{literal, s} }

// Var is the Grafana variable name, matched as a regular expression, as
// the dashboards' PromQL matches it (=~"${name}"): Grafana writes a
// multi-value selection as an alternation and All as its custom value
// .* . A data link's field value (__data.fields.endpoint) is a variable
// too; a value with regular expression characters other than . matches
// less than itself, as it does in the dashboards' PromQL.
func Var(name string) Value { return Value{variable, name} }

// Label is the label name of the alert whose annotation holds the search,
// filled in by Prometheus' template at each evaluation and quoted there
// (printf "%q" writes a Go string literal, which is a LogQL one).
func Label(name string) Value { return Template("$labels." + name) }

// Template is a Go template expression of an alert annotation (such as
// .Labels.endpoint inside a range over a query's result), filled in and
// quoted at each evaluation as Label's.
func Template(expr string) Value { return Value{template, expr} }

func (v Value) empty() bool { return v.kind == literal && v.s == "" }

// Quote writes s as a LogQL string literal. LogQL reads strings as Go
// does (strconv.Unquote), so Go's quoting is LogQL's.
func Quote(s string) string { return strconv.Quote(s) }

// match is the matcher name <op> v, "" when v matches anything.
func match(name string, v Value) string {
	switch v.kind {
	case variable:
		return name + `=~"${` + v.s + `}"`
	case template:
		return name + `={{ ` + v.s + ` | printf "%q" }}`
	}
	if v.s == "" {
		return ""
	}
	return name + "=" + Quote(v.s)
}

// query builds one search: a stream selector, then its stages.
type query struct {
	sel    []string
	stages []string
	json   bool // a | json stage was added
}

func stream(job string, project Value, kind string) *query {
	q := &query{}
	q.sel = append(q.sel, "job="+Quote(job))
	q.label("project", project)
	if kind != "" {
		q.sel = append(q.sel, "kind="+Quote(kind))
	}
	return q
}

// label adds a stream matcher.
func (q *query) label(name string, v Value) *query {
	if m := match(name, v); m != "" {
		q.sel = append(q.sel, m)
	}
	return q
}

// meta filters on structured metadata (or any label the stages have).
func (q *query) meta(name string, v Value) *query {
	if m := match(name, v); m != "" {
		q.stages = append(q.stages, "| "+m)
	}
	return q
}

// id filters on an id of the structured metadata. An empty variable (a
// text box not filled in yet) or label would match every event without
// the id: those are left out first.
func (q *query) id(name string, v Value) *query {
	if v.kind != literal {
		q.stages = append(q.stages, "| "+name+`!=""`)
	}
	return q.meta(name, v)
}

// field filters on a top-level scalar field of the JSON line (a nested
// object's fields are joined with _: root_endpoint).
func (q *query) field(name string, v Value) *query {
	m := match(name, v)
	if m == "" {
		return q
	}
	if !q.json {
		q.stages = append(q.stages, "| json")
		q.json = true
	}
	q.stages = append(q.stages, "| "+m)
	return q
}

// contains keeps the lines holding s (a cheap filter before | json).
func (q *query) contains(s string) *query {
	q.stages = append(q.stages, "|= "+Quote(s))
	return q
}

// matches keeps the lines matching the regular expression re, written as
// a raw string so that it reads as in RE2.
func (q *query) matches(re string) *query {
	q.stages = append(q.stages, "|~ `"+re+"`")
	return q
}

// hasString keeps the lines with "name":"v" anywhere in them: a field of
// the line or of an object in one of its arrays (the sql statements).
func (q *query) hasString(name string, v Value) *query {
	switch v.kind {
	case variable:
		q.stages = append(q.stages, "|~ "+Quote(jsonString(name)+`:"${`+v.s+`}"`))
	case template:
		// Alert labels of this kind are fingerprints: hex, nothing to escape.
		q.stages = append(q.stages, "|= "+Quote(jsonString(name)+`:"{{ `+v.s+` }}"`))
	default:
		if v.s != "" {
			q.contains(jsonString(name) + ":" + jsonString(v.s))
		}
	}
	return q
}

func jsonString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

func (q *query) String() string {
	s := "{" + strings.Join(q.sel, ", ") + "}"
	if len(q.stages) > 0 {
		s += " " + strings.Join(q.stages, " ")
	}
	return s
}
