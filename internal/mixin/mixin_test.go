package mixin

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const repo = "../.."

// The committed files are what the code generates: change the code, then
// `make generate`.
func TestGeneratedFilesAreCommitted(t *testing.T) {
	files, err := Files(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 7 {
		t.Errorf("got %d generated files; want 7 (2 rule files, 5 dashboards)", len(files))
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(repo, f.Path))
		if err != nil {
			t.Errorf("%s: %v (run `make generate`)", f.Path, err)
			continue
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("%s differs from what internal/mixin generates: run `make generate` and commit the result", f.Path)
		}
	}
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (Debian package prometheus; `make deps` installs it): %v", err)
	}
	return p
}

// promtool accepts the rule files, and the unit tests under alerts/tests
// pass.
func TestRulesWithPromtool(t *testing.T) {
	p := promtool(t)
	out, err := exec.Command(p, "check", "rules", filepath.Join(repo, "alerts/recording.rules.yml"), filepath.Join(repo, "alerts/alerts.rules.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	tests, err := filepath.Glob(filepath.Join(repo, "alerts/tests/*.yml"))
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule unit tests under alerts/tests (%v)", err)
	}
	out, err = exec.Command(p, append([]string{"test", "rules"}, tests...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// Every alert has a severity, a summary, a description and a runbook that
// exists, and a promtool unit test that fires it.
func TestAlertsAreComplete(t *testing.T) {
	tests, err := filepath.Glob(filepath.Join(repo, "alerts/tests/*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	fired := map[string]bool{}
	for _, f := range tests {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string           `yaml:"alertname"`
					ExpAlerts []map[string]any `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, tc := range doc.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fired[a.Alertname] = true
				}
			}
		}
	}
	c := DefaultConfig()
	seen := map[string]bool{}
	for _, g := range Alerts(c).Groups {
		for _, r := range g.Rules {
			if seen[r.Alert] {
				t.Errorf("%s: defined twice", r.Alert)
			}
			seen[r.Alert] = true
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("%s: severity %q", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s", r.Alert, a)
				}
			}
			if want := c.RunbookURL + r.Alert + ".md"; r.Annotations["runbook_url"] != want {
				t.Errorf("%s: runbook_url %q; want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			if _, err := os.Stat(filepath.Join(repo, "docs/runbooks", r.Alert+".md")); err != nil {
				t.Errorf("%s: no runbook: %v", r.Alert, err)
			}
			if !fired[r.Alert] {
				t.Errorf("%s: no unit test under alerts/tests fires it", r.Alert)
			}
		}
	}
	if len(seen) < 13 {
		t.Errorf("got %d alerts; want the 13 of the contract", len(seen))
	}
}

var variableRe = regexp.MustCompile(`\$\{?([A-Za-z_]+)`)

// Every dashboard has the datasource, project, instance, endpoint and
// query_fp variables; every query uses the datasource variable and only
// variables the dashboard defines; every link goes to a dashboard that
// exists.
func TestDashboards(t *testing.T) {
	ds, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	uids := map[string]bool{}
	for _, d := range ds {
		if uids[*d.Dashboard.Uid] {
			t.Errorf("uid %s twice", *d.Dashboard.Uid)
		}
		uids[*d.Dashboard.Uid] = true
	}
	for _, d := range ds {
		b, _ := d.JSON()
		var doc struct {
			UID        string `json:"uid"`
			Templating struct {
				List []struct {
					Name  string `json:"name"`
					Type  string `json:"type"`
					Query any    `json:"query"`
				} `json:"list"`
			} `json:"templating"`
			Panels []struct {
				Title      string `json:"title"`
				Type       string `json:"type"`
				Datasource *struct {
					UID string `json:"uid"`
				} `json:"datasource"`
				Targets []struct {
					Expr       string `json:"expr"`
					Datasource *struct {
						UID string `json:"uid"`
					} `json:"datasource"`
				} `json:"targets"`
				FieldConfig struct {
					Defaults struct {
						Links []struct {
							URL string `json:"url"`
						} `json:"links"`
					} `json:"defaults"`
				} `json:"fieldConfig"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
		var names []string
		for _, v := range doc.Templating.List {
			vars[v.Name] = true
			names = append(names, v.Name)
		}
		for _, want := range []string{"datasource", "loki", "project", "instance", "endpoint", "query_fp"} {
			if !slices.Contains(names, want) {
				t.Errorf("%s: no %s variable (has %v)", doc.UID, want, names)
			}
		}
		panels := 0
		for _, p := range doc.Panels {
			if p.Type == "row" || p.Type == "text" {
				continue
			}
			panels++
			if p.Title == "" {
				t.Errorf("%s: a %s panel without a title", doc.UID, p.Type)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s/%s: no query", doc.UID, p.Title)
			}
			// Logs panels read the raw traces in Loki, the others Prometheus.
			ds := "${datasource}"
			if p.Type == "logs" {
				ds = "${loki}"
			}
			if p.Datasource == nil || p.Datasource.UID != ds {
				t.Errorf("%s/%s: panel datasource is not %s", doc.UID, p.Title, ds)
			}
			for _, tg := range p.Targets {
				if tg.Datasource == nil || tg.Datasource.UID != ds {
					t.Errorf("%s/%s: query datasource is not %s", doc.UID, p.Title, ds)
				}
				for _, m := range variableRe.FindAllStringSubmatch(tg.Expr, -1) {
					if !vars[m[1]] {
						t.Errorf("%s/%s: $%s is not a variable of the dashboard: %s", doc.UID, p.Title, m[1], tg.Expr)
					}
				}
			}
			for _, l := range p.FieldConfig.Defaults.Links {
				if strings.HasPrefix(l.URL, "/explore?") {
					checkExploreLink(t, doc.UID+"/"+p.Title, l.URL, vars)
					continue
				}
				m := regexp.MustCompile(`^/d/([a-z-]+)/`).FindStringSubmatch(l.URL)
				if m == nil || !uids[m[1]] {
					t.Errorf("%s/%s: link %q goes to no generated dashboard", doc.UID, p.Title, l.URL)
				}
			}
		}
		if panels < 8 {
			t.Errorf("%s: %d panels; want a real dashboard", doc.UID, panels)
		}
	}
	qs, err := Queries(ds)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if _, err := Expand(q.Expr, map[string]string{"project": ".*", "instance": ".*", "endpoint": ".*", "query_fp": ".*", "server": ".*", "datname": ".*"}); err != nil {
			t.Errorf("%s/%s: %v", q.Dashboard, q.Panel, err)
		}
	}
}

func TestExpand(t *testing.T) {
	got, err := Expand(`rate(x{endpoint=~"$endpoint",query_fp=~"$query_fp"}[$__rate_interval])`, map[string]string{"endpoint": "GET /a", "query_fp": ".*"})
	if want := `rate(x{endpoint=~"GET /a",query_fp=~".*"}[1m])`; err != nil || got != want {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
	if _, err := Expand(`x{a=~"$unknown"}`, nil); err == nil {
		t.Error("an unknown variable was left in silently")
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	c.AgentJob, c.LockWait = "", 0
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "job") || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Errorf("got %v; want both problems named", err)
	}
	if _, err := Files(c); err == nil {
		t.Error("Files accepted an invalid configuration")
	}
}
