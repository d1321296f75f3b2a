package logql

// The searches. Each returns one LogQL log query; the time range is the
// caller's (Grafana's picker, logcli's --from/--to, Explore's range).

// slowRequest matches the request lines the agent sent because they were
// slow: "slow" among their reasons. The array is not a field | json can
// read, so the line is matched; the agent writes compact JSON.
const slowRequest = `"reasons":\[[^\]]*"slow"`

// forcedRequest matches the request lines the agent sent because they
// asked for their trace: "forced" among their reasons (the line has no
// forced field of its own).
const forcedRequest = `"reasons":\[[^\]]*"forced"`

// SlowestRequests is an endpoint's requests that were slow (wall at least
// the agent's --events.slow-threshold), with their statements, errors and
// stacks. An empty endpoint (Is("")) is every endpoint of the project.
func SlowestRequests(project, endpoint Value) string {
	return stream(JobAgent, project, KindRequest).matches(slowRequest).field("endpoint", endpoint).String()
}

// FailedRequests is an endpoint's failed requests (level error: a fatal
// error, an uncaught exception, status 500 and up, a CLI exit code other
// than 0), with their errors.
func FailedRequests(project, endpoint Value) string {
	return stream(JobAgent, project, KindRequest).label("level", Is("error")).field("endpoint", endpoint).String()
}

// FailedWith is the failed requests with an error of the type errType
// (an exception class, or E_ERROR and the like for PHP's errors).
func FailedWith(project, errType Value) string {
	return stream(JobAgent, project, KindRequest).label("level", Is("error")).hasString("type", errType).String()
}

// Correlation is everything of one correlation id: the PHP request, its
// profile or its abandonment, php-fpm's reports on its worker and the lock
// trees in PostgreSQL where it was the root blocker (activity snapshots
// carry no correlation id).
func Correlation(id Value) string {
	return (&query{sel: []string{"job=~" + Quote(JobAgent+"|"+JobPgExporter)}}).id("correlation_id", id).String()
}

// Trace is the PHP events of one trace id (W3C traceparent).
func Trace(id Value) string {
	return stream(JobAgent, Is(""), "").id("trace_id", id).String()
}

// Request is the events of one request id: the request, its profile,
// php-fpm's slowlog entries for it.
func Request(id Value) string {
	return stream(JobAgent, Is(""), "").id("request_id", id).String()
}

// RequestsOfQuery is the requests that ran the statement of fingerprint
// fp, anywhere among their statements (the structured metadata query_fp
// names only the one that took the most time).
func RequestsOfQuery(project, fp Value) string {
	return stream(JobAgent, project, KindRequest).hasString("query_fp", fp).String()
}

// CallSites is the slow requests of an endpoint that carry statement call
// sites: each sql entry's site lists the application frames that ran it.
func CallSites(project, endpoint Value) string {
	return stream(JobAgent, project, KindRequest).matches(slowRequest).contains(`"site":[`).field("endpoint", endpoint).String()
}

// Abandoned is the requests that never finished, with the last stack the
// agent knew of each; an empty endpoint is every endpoint.
func Abandoned(project, endpoint Value) string {
	return stream(JobAgent, project, KindAbandoned).field("endpoint", endpoint).String()
}

// Profiles is the call graphs of drawn and forced requests of an
// endpoint.
func Profiles(project, endpoint Value) string {
	return stream(JobAgent, project, KindProfile).field("endpoint", endpoint).String()
}

// ForcedRequests is the requests whose end asked for a trace ("forced"
// among their reasons); their profiles share their request_id.
func ForcedRequests(project, endpoint Value) string {
	return stream(JobAgent, project, KindRequest).matches(forcedRequest).field("endpoint", endpoint).String()
}

// FPMReports is php-fpm's slowlog entries and long-running workers of a
// project.
func FPMReports(project Value) string {
	q := stream(JobAgent, project, "")
	q.sel = append(q.sel, "kind=~"+Quote(KindFPMSlowlog+"|"+KindFPMLongRunning))
	return q.String()
}

// LockTrees is the lock trees of a PostgreSQL server and database (the
// pg-exporter's server label, host:port/db); empty values are any.
func LockTrees(server, datname Value) string {
	return stream(JobPgExporter, Is(""), KindPgLocks).field("server", server).field("datname", datname).String()
}

// LockTreesBlockedBy is the lock trees whose root blocker ran for the
// endpoint (from the SQL comment the PHP agent adds).
func LockTreesBlockedBy(endpoint Value) string {
	return stream(JobPgExporter, Is(""), KindPgLocks).field("root_endpoint", endpoint).String()
}

// Activity is the pg-exporter's snapshots of the active sessions of a
// server, taken while they were more than its threshold.
func Activity(server Value) string {
	return stream(JobPgExporter, Is(""), KindPgActivity).field("server", server).String()
}
