package mixin

import (
	"github.com/bitville/bitville-apm/internal/logql"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
)

// The common variables: project and instance (the host: node_exporter,
// the agent and the pg-exporter on one host must carry the same instance
// label, see alerts/README.md), then the drill-down keys.
func phpVars(d *dashboard.DashboardBuilder, endpointSingle, queryFPSingle bool) *dashboard.DashboardBuilder {
	return d.
		WithVariable(labelVar("project", "project", "bitville_php_requests_total", false)).
		WithVariable(labelVar("instance", "instance", `bitville_php_requests_total{project=~"$project"}`, false)).
		WithVariable(labelVar("endpoint", "endpoint", `bitville_php_requests_total{project=~"$project",instance=~"$instance"}`, endpointSingle)).
		WithVariable(labelVar("query_fp", "query_fp", "bitville_sql_query_info", queryFPSingle))
}

var (
	toEndpoint = link("Endpoint: ${__data.fields.endpoint}", UIDEndpoint, "endpoint", "endpoint")
	toSQL      = link("SQL query ${__data.fields.query_fp}", UIDSQL, "query_fp", "query_fp")
)

// triage is the front door: is the host loaded, by what processes and
// requests, which SQL and which functions.
func triage() *dashboard.DashboardBuilder {
	d := newDashboard(UIDTriage, "Bitville APM / Load spike triage",
		"When the load jumps: which requests, PHP functions and SQL queries did it. Click an endpoint or a query for its drill-down.")
	d = phpVars(d, false, false)
	epSel := sel("project", "instance", "endpoint")
	return d.
		WithRow(row("Host")).
		WithPanel(graph("Load average per CPU core", "node_load1 divided by the host's CPU cores. Above 1, work waits for a CPU (or for disk, in D state).", "short", 8, 8,
			q{expr: RuleLoadPerCore + `{instance=~"$instance"}`, legend: "{{instance}}"})).
		WithPanel(graph("Runnable and blocked processes", "Processes ready to run (R) and in uninterruptible sleep (D, mostly disk IO): what the load average counts.", "short", 8, 8,
			q{expr: `sum by (instance) (node_procs_running{instance=~"$instance"})`, legend: "running {{instance}}"},
			q{expr: `sum by (instance) (node_procs_blocked{instance=~"$instance"})`, legend: "blocked {{instance}}"})).
		WithPanel(stacked(graph("CPU by mode", "CPU cores busy, by mode.", "short", 8, 8,
			q{expr: `sum by (mode) (rate(node_cpu_seconds_total{instance=~"$instance",mode!="idle"}[$__rate_interval]))`, legend: "{{mode}}"}))).
		WithRow(row("Host processes")).
		WithPanel(stacked(graph("CPU by process name", "CPU cores by command name (the agent's host collector; never the command line). Load that is not PHP shows here: a backup, a compressor, a stuck cron shell.", "short", 12, 8,
			q{expr: `topk(10, sum by (name) (rate(bitville_host_process_cpu_seconds_total{instance=~"$instance"}[$__rate_interval])))`, legend: "{{name}}"}))).
		WithPanel(graph("Pressure stall", "Share of time some (or all: full) runnable tasks were stalled waiting for CPU, IO or memory (Linux PSI).", "percentunit", 12, 8,
			q{expr: `sum by (instance, resource, scope) (rate(bitville_host_pressure_stalled_seconds_total{instance=~"$instance"}[$__rate_interval]))`, legend: "{{resource}} {{scope}} {{instance}}"})).
		WithPanel(stacked(graph("Running tasks by name", "Tasks running or runnable (R) at the collector's last scan, by command name.", "short", 12, 8,
			q{expr: `topk(10, sum by (name) (bitville_host_tasks{instance=~"$instance",state="running"}))`, legend: "{{name}}"}))).
		WithPanel(stacked(graph("Tasks in D state by name", "Tasks in uninterruptible sleep (D: disk, NFS, swap), which the load average counts, by command name.", "short", 12, 8,
			q{expr: `topk(10, sum by (name) (bitville_host_tasks{instance=~"$instance",state="uninterruptible"}))`, legend: "{{name}}"}))).
		WithRow(row("PHP-FPM")).
		WithPanel(graph("php-fpm workers", "Active and total worker processes per pool.", "short", 8, 8,
			q{expr: `sum by (pool) (bitville_fpm_active_processes{instance=~"$instance"})`, legend: "active {{pool}}"},
			q{expr: `sum by (pool) (bitville_fpm_total_processes{instance=~"$instance"})`, legend: "total {{pool}}"})).
		WithPanel(graph("php-fpm listen queue", "Connections waiting for a free worker, and the times a pool hit pm.max_children.", "short", 8, 8,
			q{expr: `sum by (pool) (bitville_fpm_listen_queue{instance=~"$instance"})`, legend: "queued {{pool}}"},
			q{expr: `sum by (pool) (increase(bitville_fpm_max_children_reached_total{instance=~"$instance"}[$__rate_interval]))`, legend: "max_children reached {{pool}}"})).
		WithPanel(stacked(graph("Requests per second by status", "Finished PHP requests and CLI runs.", "reqps", 8, 8,
			q{expr: `sum by (status) (rate(bitville_php_requests_total` + epSel + `[$__rate_interval]))`, legend: "{{status}}"}))).
		WithRow(row("Requests")).
		WithPanel(stacked(graph("In flight by endpoint", "Requests started and not finished yet, by endpoint.", "short", 8, 8,
			q{expr: `sum by (endpoint) (bitville_php_requests_in_flight` + epSel + `)`, legend: "{{endpoint}}"}))).
		WithPanel(stacked(graph("Long-running requests by endpoint", "In flight for longer than the agent's long-request threshold (10 s).", "short", 8, 8,
			q{expr: `sum by (endpoint) (bitville_php_requests_long_running` + epSel + `)`, legend: "{{endpoint}}"}))).
		WithPanel(stacked(graph("Abandoned requests by endpoint", "Requests that started and never finished: killed by request_terminate_timeout or OOM, or crashed.", "short", 8, 8,
			q{expr: `sum by (endpoint) (increase(bitville_php_requests_abandoned_total` + epSel + `[$__rate_interval]))`, legend: "{{endpoint}}"}))).
		WithPanel(stacked(graph("Top endpoints by CPU", "CPU seconds per second (cores) spent by each endpoint's requests.", "short", 12, 9,
			q{expr: `topk(10, sum by (endpoint) (` + RuleEndpointCPU + epSel + `))`, legend: "{{endpoint}}"}))).
		WithPanel(stacked(graph("Top endpoints by wall time", "Wall seconds per second: the php-fpm workers each endpoint keeps busy.", "short", 12, 9,
			q{expr: `topk(10, sum by (endpoint) (` + RuleEndpointWall + epSel + `))`, legend: "{{endpoint}}"}))).
		WithPanel(top("Endpoints by CPU over the range", "Average CPU seconds per second over the dashboard's time range. Click for the endpoint.", "short", "CPU s/s", 12, 9,
			`topk(20, sum by (project, endpoint) (rate(bitville_php_request_cpu_seconds_total`+epSel+`[$__range])))`, toEndpoint, exploreEndpoint)).
		WithPanel(top("Endpoints by wall time over the range", "Average busy workers over the dashboard's time range. Click for the endpoint.", "short", "busy workers", 12, 9,
			`topk(20, sum by (project, endpoint) (rate(bitville_php_request_duration_seconds_sum`+epSel+`[$__range])))`, toEndpoint, exploreEndpoint)).
		WithRow(row("SQL")).
		WithPanel(top("SQL by time in PHP", "Seconds per second PHP spent waiting on each query (all its endpoints). Click for the query.", "short", "s/s", 12, 9,
			withText(`topk(20, sum by (query_fp) (rate(bitville_php_sql_seconds_total`+sel("project", "instance", "endpoint", "query_fp")+`[$__range])))`), toSQL, exploreQuery)).
		WithPanel(top("SQL by database active sessions", "Average sessions running each query in PostgreSQL (pg_stat_activity sampled every second). Click for the query.", "short", "active sessions", 12, 9,
			withText(`topk(20, sum by (query_fp) (rate(bitville_pg_session_samples_total{state="active",endpoint=~"$endpoint",query_fp=~"$query_fp"}[$__range])))`), toSQL, exploreQuery)).
		WithPanel(stacked(graph("SQL time in PHP by query", "Seconds per second PHP spent in each query.", "short", 12, 8,
			q{expr: `topk(10, sum by (query_fp) (` + RulePHPSQL + sel("project", "instance", "query_fp") + `))`, legend: "{{query_fp}}"}))).
		WithPanel(stacked(graph("Database active sessions by wait event", "Average active sessions in PostgreSQL, by what they wait on (CPU: running).", "short", 12, 8,
			q{expr: `sum by (wait_event_type, wait_event) (` + RulePgAAS + `{state="active",query_fp=~"$query_fp"})`, legend: "{{wait_event_type}}/{{wait_event}}"}))).
		WithRow(row("PHP functions")).
		WithPanel(top("Functions by self time over the range", "CPU seconds per second in each function itself (sampling profiler).", "short", "self s/s", 12, 9,
			`topk(20, sum by (function) (rate(bitville_php_function_self_seconds_total`+sel("project", "instance")+`[$__range])))`)).
		WithPanel(top("Functions by busy workers over the range", "Wall seconds per second each function held a worker (real-time profiler): a blocking call is named by the call (session_start, fgets, ->get), with the user function that made it.", "short", "busy workers", 12, 9,
			`topk(20, sum by (function, caller) (rate(bitville_php_function_wall_seconds_total`+sel("project", "instance")+`[$__range])))`)).
		WithPanel(stacked(graph("Top functions by self time", "CPU seconds per second in each function itself (sampling profiler).", "short", 12, 9,
			q{expr: `topk(10, sum by (function) (` + RuleFunctionSelf + sel("project", "instance") + `))`, legend: "{{function}}"}))).
		WithPanel(stacked(graph("Functions by busy workers (wall)", "Workers each function holds, CPU or not (wall seconds per second, real-time profiler), by function and caller: workers waiting on a session lock, a partner service or Redis show here and not under self time.", "short", 12, 9,
			q{expr: `topk(10, sum by (function, caller) (rate(bitville_php_function_wall_seconds_total` + sel("project", "instance") + `[$__rate_interval])))`, legend: "{{function}} <- {{caller}}"})))
}

// endpointDashboard is one endpoint: latency, CPU, memory, its queries
// and functions.
func endpointDashboard() *dashboard.DashboardBuilder {
	d := newDashboard(UIDEndpoint, "Bitville APM / Endpoint", "One endpoint: latency, CPU and memory per request, its top queries and functions.")
	d = phpVars(d, true, false).WithVariable(correlationVar())
	e := sel("project", "instance", "endpoint")
	hq := func(p string) q {
		return q{expr: `histogram_quantile(` + p + `, sum by (le) (rate(bitville_php_request_duration_seconds_bucket` + e + `[$__rate_interval])))`, legend: "p" + p[2:]}
	}
	return d.
		WithPanel(single("Requests/s", "", "reqps", 6, 4, q{expr: `sum(rate(bitville_php_requests_total` + e + `[$__rate_interval]))`})).
		WithPanel(single("p95 latency", "", "s", 6, 4, q{expr: `histogram_quantile(0.95, sum by (le) (rate(bitville_php_request_duration_seconds_bucket` + e + `[$__rate_interval])))`})).
		WithPanel(single("CPU per request", "", "s", 6, 4, q{expr: `sum(rate(bitville_php_request_cpu_seconds_total` + e + `[$__rate_interval])) / sum(rate(bitville_php_request_duration_seconds_count` + e + `[$__rate_interval]))`})).
		WithPanel(single("In flight", "", "short", 6, 4, q{expr: `sum(bitville_php_requests_in_flight` + e + `)`})).
		WithPanel(graph("Latency quantiles", "Wall time of finished requests.", "s", 12, 8, hq("0.50"), hq("0.95"), hq("0.99"))).
		WithPanel(heatmap.NewPanelBuilder().Title("Latency heatmap").Description("Finished requests per latency bucket.").Span(12).Height(8).
			Datasource(datasource).Targets(targets([]q{{expr: `sum by (le) (increase(bitville_php_request_duration_seconds_bucket` + e + `[$__interval]))`, heatmap: true}})).
			Calculate(false)).
		WithPanel(graph("CPU and wall time per request", "Mean CPU (user+system) and wall seconds per finished request.", "s", 12, 8,
			q{expr: `sum(rate(bitville_php_request_cpu_seconds_total` + e + `[$__rate_interval])) / sum(rate(bitville_php_request_duration_seconds_count` + e + `[$__rate_interval]))`, legend: "CPU"},
			q{expr: `sum(rate(bitville_php_request_duration_seconds_sum` + e + `[$__rate_interval])) / sum(rate(bitville_php_request_duration_seconds_count` + e + `[$__rate_interval]))`, legend: "wall"},
			q{expr: `sum(rate(bitville_php_sql_seconds_total` + e + `[$__rate_interval])) / sum(rate(bitville_php_request_duration_seconds_count` + e + `[$__rate_interval]))`, legend: "SQL"})).
		WithPanel(graph("Peak memory per request", "PHP's peak memory of finished requests.", "bytes", 12, 8,
			q{expr: `histogram_quantile(0.5, sum by (le) (rate(bitville_php_request_memory_peak_bytes_bucket` + e + `[$__rate_interval])))`, legend: "p50"},
			q{expr: `histogram_quantile(0.95, sum by (le) (rate(bitville_php_request_memory_peak_bytes_bucket` + e + `[$__rate_interval])))`, legend: "p95"})).
		WithPanel(stacked(graph("Requests by method and status", "", "reqps", 8, 8,
			q{expr: `sum by (method, status) (rate(bitville_php_requests_total` + e + `[$__rate_interval]))`, legend: "{{method}} {{status}}"}))).
		WithPanel(graph("In flight, long-running, abandoned", "", "short", 8, 8,
			q{expr: `sum(bitville_php_requests_in_flight` + e + `)`, legend: "in flight"},
			q{expr: `sum(bitville_php_requests_long_running` + e + `)`, legend: "long-running"},
			q{expr: `sum(increase(bitville_php_requests_abandoned_total` + e + `[$__rate_interval]))`, legend: "abandoned"})).
		WithPanel(stacked(graph("Errors by kind", "PHP errors, warnings, exceptions and fatals per second.", "short", 8, 8,
			q{expr: `sum by (kind) (rate(bitville_php_errors_total` + e + `[$__rate_interval]))`, legend: "{{kind}}"}))).
		WithPanel(top("Its queries by time in PHP", "Seconds per second this endpoint spent in each query. Click for the query.", "short", "s/s", 12, 9,
			withText(`topk(20, sum by (query_fp) (rate(bitville_php_sql_seconds_total`+e+`[$__range])))`), toSQL, exploreQuery)).
		WithPanel(top("Its functions by self time", "CPU seconds per second in each function, from each request's 10 heaviest.", "short", "self s/s", 12, 9,
			`topk(20, sum by (function) (rate(bitville_php_endpoint_function_self_seconds_total`+e+`[$__range])))`)).
		WithPanel(stacked(graph("Its database sessions by wait event", "Average PostgreSQL sessions running this endpoint's queries (from the SQL comment the PHP agent adds).", "short", 24, 8,
			q{expr: `sum by (wait_event_type, wait_event) (rate(bitville_pg_session_samples_total{endpoint=~"$endpoint"}[$__rate_interval]))`, legend: "{{wait_event_type}}/{{wait_event}}"}))).
		WithRow(row("Raw traces (Loki)")).
		WithPanel(rawTraces("Slowest requests of this endpoint", "The requests the agent sent to Loki because they were slow, newest first: each line holds the request's statements (with their call sites), errors and stacks. Empty without the agent's --loki.url.", 12, 10,
			logql.SlowestRequests(logql.Var("project"), logql.Var("endpoint")))).
		WithPanel(rawTraces("Failed requests", "Requests that died of a fatal error or an uncaught exception, answered 500 or more, or (CLI) exited non-zero, with their errors.", 12, 10,
			logql.FailedRequests(logql.Var("project"), logql.Var("endpoint")))).
		WithPanel(rawTraces("Everything of one correlation id", "Type a correlation id in the variable above: its request, profile and php-fpm reports, and the PostgreSQL lock trees where it was the root blocker.", 24, 10,
			logql.Correlation(logql.Var("correlation_id"))))
}

// sqlDashboard is one query fingerprint, PHP side and database side.
func sqlDashboard() *dashboard.DashboardBuilder {
	d := newDashboard(UIDSQL, "Bitville APM / SQL query", "One query fingerprint: what PHP saw (latency, calls by endpoint) beside what PostgreSQL saw (time, rows, buffers, waits).")
	d = phpVars(d, false, true)
	php := sel("project", "instance", "endpoint", "query_fp")
	fp := `{query_fp=~"$query_fp"}`
	hq := func(p string) q {
		return q{expr: `histogram_quantile(` + p + `, sum by (le) (rate(bitville_php_sql_duration_seconds_bucket` + sel("project", "instance", "query_fp") + `[$__rate_interval])))`, legend: "p" + p[2:]}
	}
	return d.
		WithPanel(top("Normalised text", "The query with its constants replaced by placeholders. Click for the requests that ran it (Loki).", "short", "", 24, 4, RuleQueryInfo+fp, exploreQuery)).
		WithPanel(graph("Latency in PHP", "Per statement, as PHP saw it (top queries have a histogram; the mean is there for every query).", "s", 12, 8,
			hq("0.50"), hq("0.95"), hq("0.99"),
			q{expr: `sum(rate(bitville_php_sql_seconds_total` + php + `[$__rate_interval])) / sum(rate(bitville_php_sql_calls_total` + php + `[$__rate_interval]))`, legend: "mean"})).
		WithPanel(stacked(graph("Calls by endpoint", "Statements per second, by the endpoint that ran them.", "short", 12, 8,
			q{expr: `sum by (endpoint) (rate(bitville_php_sql_calls_total` + php + `[$__rate_interval]))`, legend: "{{endpoint}}"}))).
		WithPanel(stacked(graph("Time in PHP by endpoint", "Seconds per second PHP waited on this query, by endpoint.", "short", 12, 8,
			q{expr: `sum by (endpoint) (rate(bitville_php_sql_seconds_total` + php + `[$__rate_interval]))`, legend: "{{endpoint}}"}))).
		WithPanel(graph("Time in the database", "Execution seconds per second in PostgreSQL (pg_stat_statements), and planning where tracked.", "short", 12, 8,
			q{expr: `sum by (server, datname) (rate(bitville_pg_statement_seconds_total` + fp + `[$__rate_interval]))`, legend: "execution {{server}} {{datname}}"},
			q{expr: `sum by (server, datname) (rate(bitville_pg_statement_planning_seconds_total` + fp + `[$__rate_interval]))`, legend: "planning {{server}} {{datname}}"})).
		WithPanel(graph("Database calls and rows", "", "short", 8, 8,
			q{expr: `sum(rate(bitville_pg_statement_calls_total` + fp + `[$__rate_interval]))`, legend: "calls/s"},
			q{expr: `sum(rate(bitville_pg_statement_rows_total` + fp + `[$__rate_interval]))`, legend: "rows/s"})).
		WithPanel(graph("Shared buffers", "Blocks found in shared buffers (hit) and read from the OS (read), per second.", "short", 8, 8,
			q{expr: `sum(rate(bitville_pg_statement_shared_blocks_hit_total` + fp + `[$__rate_interval]))`, legend: "hit"},
			q{expr: `sum(rate(bitville_pg_statement_shared_blocks_read_total` + fp + `[$__rate_interval]))`, legend: "read"})).
		WithPanel(graph("Mean database time per call", "", "s", 8, 8,
			q{expr: `sum(rate(bitville_pg_statement_seconds_total` + fp + `[$__rate_interval])) / sum(rate(bitville_pg_statement_calls_total` + fp + `[$__rate_interval]))`, legend: "mean"})).
		WithPanel(stacked(graph("Database sessions by wait event", "Average sessions running this query, by what they wait on.", "short", 12, 8,
			q{expr: `sum by (wait_event_type, wait_event) (rate(bitville_pg_session_samples_total{query_fp=~"$query_fp",endpoint=~"$endpoint"}[$__rate_interval]))`, legend: "{{wait_event_type}}/{{wait_event}}"}))).
		WithPanel(graph("Temp files and WAL", "Bytes per second written to temporary files and to the WAL.", "Bps", 12, 8,
			q{expr: `sum(rate(bitville_pg_statement_temp_bytes_total` + fp + `[$__rate_interval]))`, legend: "temp"},
			q{expr: `sum(rate(bitville_pg_statement_wal_bytes_total` + fp + `[$__rate_interval]))`, legend: "WAL"}))
}

// postgresDashboard is one PostgreSQL server: sessions, locks,
// transactions, connections, checkpoints, replication.
func postgresDashboard() *dashboard.DashboardBuilder {
	d := newDashboard(UIDPostgres, "Bitville APM / PostgreSQL", "Active sessions by wait event and query, locks and blockers, transactions, connections, checkpoints and replication.").
		WithVariable(labelVar("server", "server", "bitville_pg_up", false)).
		WithVariable(labelVar("datname", "datname", `bitville_pg_database_commits_total{server=~"$server"}`, false)).
		WithVariable(labelVar("project", "project", "bitville_php_requests_total", false)).
		WithVariable(labelVar("instance", "instance", "bitville_pg_up", false)).
		WithVariable(labelVar("endpoint", "endpoint", `bitville_pg_session_samples_total{server=~"$server"}`, false)).
		WithVariable(labelVar("query_fp", "query_fp", `bitville_pg_session_samples_total{server=~"$server"}`, false))
	s := `server=~"$server",instance=~"$instance"`
	sd := `{` + s + `,datname=~"$datname"}`
	samples := `bitville_pg_session_samples_total{` + s + `,datname=~"$datname",endpoint=~"$endpoint",query_fp=~"$query_fp"`
	return d.
		WithPanel(single("Up", "The exporter could connect and query.", "short", 6, 4, q{expr: `min(bitville_pg_up{` + s + `})`})).
		WithPanel(single("Active sessions", "At the last sample.", "short", 6, 4, q{expr: `sum(bitville_pg_active_sessions{` + s + `,state="active"})`})).
		WithPanel(single("Blocked sessions", "Waiting on a heavyweight lock.", "short", 6, 4, q{expr: `sum(bitville_pg_blocked_sessions` + sd + `)`})).
		WithPanel(single("Connections used", "Client connections against max_connections minus the superuser reserve.", "percentunit", 6, 4,
			q{expr: `sum(bitville_pg_connections{` + s + `}) / (max(bitville_pg_max_connections{` + s + `}) - max(bitville_pg_superuser_reserved_connections{` + s + `}))`})).
		WithRow(row("Sessions")).
		WithPanel(stacked(graph("Average active sessions by wait event", "pg_stat_activity sampled every second: sessions per state and wait (CPU: running).", "short", 12, 9,
			q{expr: `sum by (state, wait_event_type, wait_event) (rate(` + samples + `}[$__rate_interval]))`, legend: "{{state}} {{wait_event_type}}/{{wait_event}}"}))).
		WithPanel(stacked(graph("Average active sessions by query", "", "short", 12, 9,
			q{expr: `topk(10, sum by (query_fp) (rate(` + samples + `,state="active"}[$__rate_interval])))`, legend: "{{query_fp}}"}))).
		WithPanel(stacked(graph("Average active sessions by endpoint", "The PHP endpoint, from the SQL comment the PHP agent adds.", "short", 12, 9,
			q{expr: `topk(10, sum by (endpoint) (rate(` + samples + `,state="active"}[$__rate_interval])))`, legend: "{{endpoint}}"}))).
		WithPanel(top("Statements by database time over the range", "Execution seconds per second (pg_stat_statements). Click for the query.", "short", "s/s", 12, 9,
			withText(`topk(20, sum by (query_fp) (rate(bitville_pg_statement_seconds_total`+sd+`[$__range])))`), toSQL, exploreQuery)).
		WithRow(row("Locks")).
		WithPanel(graph("Blocked sessions", "Sessions waiting on a heavyweight lock, by database.", "short", 8, 8,
			q{expr: `sum by (datname) (bitville_pg_blocked_sessions` + sd + `)`, legend: "{{datname}}"})).
		WithPanel(graph("Longest lock wait and oldest root blocker", "", "s", 8, 8,
			q{expr: `max by (datname) (bitville_pg_lock_wait_seconds_max` + sd + `)`, legend: "wait {{datname}}"},
			q{expr: `max by (datname) (bitville_pg_lock_root_blocker_age_seconds_max` + sd + `)`, legend: "root blocker age {{datname}}"})).
		WithPanel(top("Root blockers now", "Sessions blocked under each root blocker's last query (the full trees are at the exporter's /api/v1/locks).", "short", "blocked sessions", 8, 8,
			withText(`sum by (server, datname, query_fp) (bitville_pg_lock_blocked_by_root`+sd+`)`), toSQL, exploreQuery)).
		WithRow(row("Transactions")).
		WithPanel(graph("Commits and rollbacks", "", "short", 8, 8,
			q{expr: `sum by (datname) (rate(bitville_pg_database_commits_total` + sd + `[$__rate_interval]))`, legend: "commits {{datname}}"},
			q{expr: `sum by (datname) (rate(bitville_pg_database_rollbacks_total` + sd + `[$__rate_interval]))`, legend: "rollbacks {{datname}}"})).
		WithPanel(graph("Oldest transaction, longest query, idle in transaction", "", "s", 8, 8,
			q{expr: `max by (state) (bitville_pg_oldest_transaction_seconds` + sd + `)`, legend: "oldest transaction ({{state}})"},
			q{expr: `max(bitville_pg_longest_query_seconds` + sd + `)`, legend: "longest query"},
			q{expr: `max(bitville_pg_idle_in_transaction_seconds_max` + sd + `)`, legend: "idle in transaction"})).
		WithPanel(graph("Deadlocks, conflicts and temp files", "", "short", 8, 8,
			q{expr: `sum(rate(bitville_pg_database_deadlocks_total` + sd + `[$__rate_interval]))`, legend: "deadlocks/s"},
			q{expr: `sum(rate(bitville_pg_database_conflicts_total` + sd + `[$__rate_interval]))`, legend: "conflicts/s"},
			q{expr: `sum(rate(bitville_pg_database_temp_files_total` + sd + `[$__rate_interval]))`, legend: "temp files/s"})).
		WithRow(row("Connections, buffers and checkpoints")).
		WithPanel(stacked(graph("Connections by state", "Client backends by state; compare with max_connections.", "short", 8, 8,
			q{expr: `sum by (state) (bitville_pg_connections` + sd + `)`, legend: "{{state}}"}))).
		WithPanel(graph("Cache hit ratio", "Share of block reads found in shared buffers.", "percentunit", 8, 8,
			q{expr: `sum(rate(bitville_pg_database_blocks_hit_total` + sd + `[$__rate_interval])) / (sum(rate(bitville_pg_database_blocks_hit_total` + sd + `[$__rate_interval])) + sum(rate(bitville_pg_database_blocks_read_total` + sd + `[$__rate_interval])))`, legend: "hit ratio"})).
		WithPanel(graph("Checkpoints and buffers written", "", "short", 8, 8,
			q{expr: `sum by (kind) (increase(bitville_pg_checkpoints_total{` + s + `}[$__rate_interval]))`, legend: "checkpoints {{kind}}"},
			q{expr: `sum(rate(bitville_pg_checkpoint_buffers_written_total{` + s + `}[$__rate_interval]))`, legend: "buffers/s by checkpoints"},
			q{expr: `sum(rate(bitville_pg_bgwriter_buffers_clean_total{` + s + `}[$__rate_interval]))`, legend: "buffers/s by the bgwriter"})).
		WithRow(row("Replication and autovacuum")).
		WithPanel(graph("Replication lag", "Replay lag of each standby (seen from the primary), and a standby's own replay delay.", "s", 8, 8,
			q{expr: `max by (server, application_name) (bitville_pg_replication_lag_seconds{` + s + `})`, legend: "{{server}} → {{application_name}}"},
			q{expr: `max by (server) (bitville_pg_standby_replay_delay_seconds{` + s + `})`, legend: "replay delay {{server}}"})).
		WithPanel(graph("Replication lag in bytes", "", "bytes", 8, 8,
			q{expr: `max by (server, application_name) (bitville_pg_replication_lag_bytes{` + s + `})`, legend: "{{server}} → {{application_name}}"})).
		WithPanel(graph("Autovacuum workers", "", "short", 8, 8,
			q{expr: `sum(bitville_pg_autovacuum_workers` + sd + `)`, legend: "running"},
			q{expr: `max(bitville_pg_autovacuum_max_workers{` + s + `})`, legend: "autovacuum_max_workers"}))
}

// agentDashboard is the health of the measuring itself: messages, drops,
// overflow and the scrape cost of both exporters.
func agentDashboard() *dashboard.DashboardBuilder {
	d := newDashboard(UIDAgent, "Bitville APM / Agent health", "Is the measuring itself healthy: messages, drops, label overflow, and what the exporters cost.").
		WithVariable(labelVar("project", "project", "bitville_php_requests_total", false)).
		WithVariable(labelVar("instance", "instance", "bitville_agent_build_info", false)).
		WithVariable(labelVar("endpoint", "endpoint", `bitville_php_requests_total{instance=~"$instance"}`, false)).
		WithVariable(labelVar("query_fp", "query_fp", "bitville_sql_query_info", false))
	i := `{instance=~"$instance"}`
	return d.
		WithPanel(stacked(graph("Messages by type and result", "Datagrams from PHP decoded by the agent, per second.", "short", 12, 8,
			q{expr: `sum by (type, result) (rate(bitville_agent_messages_total` + i + `[$__rate_interval]))`, legend: "{{type}} {{result}}"}))).
		WithPanel(stacked(graph("Rejected messages by reason", "Invalid messages per second, by why they were rejected.", "short", 12, 8,
			q{expr: `sum by (reason) (rate(bitville_agent_messages_total{instance=~"$instance",result="invalid"}[$__rate_interval]))`, legend: "{{reason}}"}))).
		WithPanel(graph("Dropped on the PHP side", "Messages PHP could not send (socket full or agent down), statements it left out of a message, messages it truncated: reported in the next message that got through.", "short", 12, 8,
			q{expr: `sum by (project) (rate(bitville_agent_php_send_failures_total{instance=~"$instance",project=~"$project"}[$__rate_interval]))`, legend: "send failures {{project}}"},
			q{expr: `sum by (project) (rate(bitville_agent_php_sql_dropped_total{instance=~"$instance",project=~"$project"}[$__rate_interval]))`, legend: "SQL dropped {{project}}"},
			q{expr: `sum by (project) (rate(bitville_agent_php_truncated_messages_total{instance=~"$instance",project=~"$project"}[$__rate_interval]))`, legend: "truncated {{project}}"})).
		WithPanel(graph("Spool", "End messages the socket refused (agent stalled or away), spooled by PHP and taken in by the agent: replayed, waiting, and lost (evicted by PHP from a full spool, or dropped by the agent as too old or past its bound).", "short", 12, 8,
			q{expr: `sum by (result) (rate(bitville_agent_spool_files_total` + i + `[$__rate_interval]))`, legend: "{{result}}"},
			q{expr: `sum(rate(bitville_agent_php_spool_evicted_total` + i + `[$__rate_interval]))`, legend: "evicted by PHP"},
			q{expr: `sum(bitville_agent_spool_backlog_files` + i + `)`, legend: "backlog (files)"})).
		WithPanel(graph("Datagrams received", "", "short", 12, 8,
			q{expr: `sum(rate(bitville_agent_datagrams_received_total` + i + `[$__rate_interval]))`, legend: "datagrams/s"},
			q{expr: `sum(rate(bitville_agent_datagram_bytes_total` + i + `[$__rate_interval]))`, legend: "bytes/s"})).
		WithPanel(graph("Series held, by label", "Label values the agent holds; each kind has a limit past which new values count as other.", "short", 12, 8,
			q{expr: `sum by (label) (bitville_agent_series` + i + `)`, legend: "{{label}}"})).
		WithPanel(graph("Label overflow and expiry", "New values counted as other because a limit was reached, and idle series removed.", "short", 12, 8,
			q{expr: `sum by (label) (rate(bitville_agent_series_overflow_total` + i + `[$__rate_interval]))`, legend: "overflow {{label}}"},
			q{expr: `sum by (label) (rate(bitville_agent_series_expired_total` + i + `[$__rate_interval]))`, legend: "expired {{label}}"})).
		WithPanel(graph("In-flight table", "Requests the agent tracks, and those it gave up on.", "short", 12, 8,
			q{expr: `sum(bitville_agent_inflight_requests` + i + `)`, legend: "in flight"},
			q{expr: `sum by (reason) (rate(bitville_agent_inflight_abandoned_total` + i + `[$__rate_interval]))`, legend: "abandoned/s {{reason}}"})).
		WithPanel(graph("php-fpm status reads", "Whether each pool's status page could be read.", "short", 12, 8,
			q{expr: `min by (pool) (bitville_fpm_up` + i + `)`, legend: "up {{pool}}"},
			q{expr: `sum by (reason) (rate(bitville_fpm_status_errors_total` + i + `[$__rate_interval]))`, legend: "errors/s {{reason}}"})).
		WithPanel(graph("Scrape duration", "How long Prometheus takes to scrape each exporter.", "s", 12, 8,
			q{expr: `max by (job, instance) (scrape_duration_seconds{job=~"bitville.*"})`, legend: "{{job}} {{instance}}"})).
		WithPanel(graph("Exporter CPU and memory", "CPU cores and resident memory of the agent and the pg-exporter.", "short", 12, 8,
			q{expr: `sum by (job, instance) (rate(process_cpu_seconds_total{job=~"bitville.*"}[$__rate_interval]))`, legend: "CPU {{job}} {{instance}}"})).
		WithPanel(graph("Exporter memory", "", "bytes", 12, 8,
			q{expr: `max by (job, instance) (process_resident_memory_bytes{job=~"bitville.*"})`, legend: "RSS {{job}} {{instance}}"})).
		WithPanel(graph("pg-exporter collectors", "Time each collector took at the last scrape.", "s", 12, 8,
			q{expr: `max by (server, collector) (bitville_pg_scrape_duration_seconds)`, legend: "{{collector}} {{server}}"})).
		WithPanel(graph("pg-exporter failures", "Collector runs that failed, and activity samples that failed.", "short", 12, 8,
			q{expr: `sum by (server, collector) (rate(bitville_pg_scrape_errors_total[$__rate_interval]))`, legend: "{{collector}} {{server}}"},
			q{expr: `sum by (server) (rate(bitville_pg_activity_samples_total{result="error"}[$__rate_interval]))`, legend: "activity samples {{server}}"})).
		WithPanel(graph("pg-exporter sampler", "pg_stat_activity samples per second and the last sample's duration.", "short", 12, 8,
			q{expr: `sum by (server) (rate(bitville_pg_activity_samples_total{result="ok"}[$__rate_interval]))`, legend: "samples/s {{server}}"},
			q{expr: `max by (server) (bitville_pg_activity_sample_duration_seconds)`, legend: "duration {{server}}"}))
}
