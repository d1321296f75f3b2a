package promapi

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func serve(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestQueryVectorAndScalar(t *testing.T) {
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		switch r.URL.Query().Get("query") {
		case "up":
			if r.URL.Query().Get("time") != "1700000000.500" {
				t.Errorf("time = %q", r.URL.Query().Get("time"))
			}
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"a"},"value":[1700000000.5,"1"]},{"metric":{"job":"b"},"value":[1700000000.5,"NaN"]}]}}`))
		case "1+1":
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"scalar","result":[1700000000,"2"]}}`))
		case "rate(x[":
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"status":"error","errorType":"bad_data","error":"1:8: parse error: unclosed left bracket"}`))
		}
	})
	ctx := context.Background()
	got, err := c.Query(ctx, "up", time.Unix(1700000000, 500e6))
	if err != nil || len(got) != 2 || got[0].Metric["job"] != "a" || got[0].Value != 1 || got[0].Time.Unix() != 1700000000 {
		t.Fatalf("vector: %+v, %v", got, err)
	}
	if !math.IsNaN(got[1].Value) {
		t.Errorf("NaN decoded as %v", got[1].Value)
	}
	s, err := c.Query(ctx, "1+1", time.Time{})
	if err != nil || len(s) != 1 || s[0].Value != 2 {
		t.Fatalf("scalar: %+v, %v", s, err)
	}
	_, err = c.Query(ctx, "rate(x[", time.Time{})
	var pe *Error
	if !errors.As(err, &pe) || pe.Type != "bad_data" || pe.HTTPStatus != 400 || !strings.Contains(err.Error(), "unclosed") {
		t.Errorf("parse error: %v", err)
	}
}

func TestQueryRangeAlertsRules(t *testing.T) {
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/query_range":
			q := r.URL.Query()
			if q.Get("step") != "15" || q.Get("start") != "100.000" || q.Get("end") != "130.000" {
				t.Errorf("range params %v", q)
			}
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"k":"v"},"values":[[100,"1"],[115,"2.5"],[130,"4"]]}]}}`))
		case "/api/v1/alerts":
			_, _ = w.Write([]byte(`{"status":"success","data":{"alerts":[{"labels":{"alertname":"X"},"annotations":{"summary":"s"},"state":"firing","activeAt":"2026-11-28T12:00:00Z","value":"3e+00"}]}}`))
		case "/api/v1/rules":
			_, _ = w.Write([]byte(`{"status":"success","data":{"groups":[{"name":"g","file":"f","rules":[{"name":"r","query":"up","health":"ok","type":"recording"}]}]}}`))
		default:
			http.NotFound(w, r)
		}
	})
	ctx := context.Background()
	m, err := c.QueryRange(ctx, "x", time.Unix(100, 0), time.Unix(130, 0), 15*time.Second)
	if err != nil || len(m) != 1 || len(m[0].Points) != 3 || m[0].Points[1].Value != 2.5 || m[0].Metric["k"] != "v" {
		t.Fatalf("matrix: %+v, %v", m, err)
	}
	if _, err := c.QueryRange(ctx, "x", time.Unix(100, 0), time.Unix(130, 0), 0); err == nil {
		t.Error("a zero step was accepted")
	}
	a, err := c.Alerts(ctx)
	if err != nil || len(a) != 1 || a[0].State != "firing" || a[0].Annotations["summary"] != "s" {
		t.Fatalf("alerts: %+v, %v", a, err)
	}
	g, err := c.Rules(ctx)
	if err != nil || len(g) != 1 || g[0].Rules[0].Health != "ok" {
		t.Fatalf("rules: %+v, %v", g, err)
	}
}

func TestNotPrometheusAndUnreachable(t *testing.T) {
	c := serve(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("<html>login</html>")) })
	if _, err := c.Query(context.Background(), "up", time.Time{}); err == nil || !strings.Contains(err.Error(), "not the Prometheus API") {
		t.Errorf("an HTML page: %v", err)
	}
	gone, _ := New("http://127.0.0.1:1")
	if _, err := gone.Query(context.Background(), "up", time.Time{}); err == nil || !strings.Contains(err.Error(), "cannot reach Prometheus") {
		t.Errorf("unreachable: %v", err)
	}
	for _, bad := range []string{"", "localhost:9090", "ftp://x", "http://"} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}
