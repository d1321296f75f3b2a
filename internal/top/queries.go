package top

import "context"

// QueryFigures are a query's figures in one period.
type QueryFigures struct {
	PHP      float64 `json:"php_seconds_per_second"` // seconds/s PHP waited on it
	Sessions float64 `json:"db_active_sessions"`     // average active sessions running it
	Exec     float64 `json:"db_exec_seconds_per_second"`
}

// Query is one ranked query fingerprint. Score = the largest growth of
// its three figures (they measure the same time from different sides).
type Query struct {
	Name     string       `json:"name"` // normalised text ("" when unknown)
	QueryFP  string       `json:"query_fp"`
	Score    float64      `json:"score"`
	Window   QueryFigures `json:"window"`
	Baseline QueryFigures `json:"baseline"`
	// TopEndpoint is the endpoint that spent most PHP time on it in the
	// window, when known.
	TopEndpoint string `json:"top_endpoint,omitempty"`
}

func queries(ctx context.Context, e evaluator, o Options) ([]Query, error) {
	items, err := gather(ctx, e, []figure[QueryFigures]{
		{`sum by (query_fp) (rate(bitville_php_sql_seconds_total` + o.phpSel() + `[$range]))`, func(f *QueryFigures, v float64) { f.PHP = v }},
		{`sum by (query_fp) (rate(bitville_pg_session_samples_total{state="active"}[$range]))`, func(f *QueryFigures, v float64) { f.Sessions = v }},
		{`sum by (query_fp) (rate(bitville_pg_statement_seconds_total[$range]))`, func(f *QueryFigures, v float64) { f.Exec = v }},
	},
		func(m map[string]string) string { return m["query_fp"] },
		func(m map[string]string) *Query { return &Query{QueryFP: m["query_fp"]} },
		func(it *Query) (*QueryFigures, *QueryFigures) { return &it.Window, &it.Baseline })
	if err != nil {
		return nil, err
	}
	out := rank(items, func(it *Query) (float64, bool) {
		if it.QueryFP == "" || it.QueryFP == "other" {
			return 0, false // no statement, or the sum of those past a label limit
		}
		it.Score = max(it.Window.PHP-it.Baseline.PHP, it.Window.Sessions-it.Baseline.Sessions, it.Window.Exec-it.Baseline.Exec)
		return it.Score, it.Score >= minGrowth
	}, func(it *Query) string { return it.QueryFP }, o.Limit)
	if len(out) == 0 {
		return out, nil
	}
	// Texts and the endpoint behind each, for the ranked ones only.
	fps := make([]string, len(out))
	for i, q := range out {
		fps[i] = q.QueryFP
	}
	re := "query_fp=~" + regexOf(fps)
	texts, err := e.window(ctx, `max by (query_fp, query) (last_over_time(bitville_sql_query_info{`+re+`}[$range]))`)
	if err != nil {
		return nil, err
	}
	eps, err := e.window(ctx, `topk by (query_fp) (1, sum by (query_fp, endpoint) (rate(bitville_php_sql_seconds_total`+o.phpSel(re)+`[$range])))`)
	if err != nil {
		return nil, err
	}
	for i := range out {
		for _, t := range texts {
			if t.Metric["query_fp"] == out[i].QueryFP && (out[i].Name == "" || len(t.Metric["query"]) > len(out[i].Name)) {
				out[i].Name = t.Metric["query"] // the longest: the agent's is cut at 300 bytes
			}
		}
		for _, s := range eps {
			if s.Metric["query_fp"] == out[i].QueryFP && s.Value > 0 {
				out[i].TopEndpoint = s.Metric["endpoint"]
			}
		}
	}
	return out, nil
}
