package compose

import (
	"net/url"
	"path/filepath"
	"slices"
	"testing"

	"github.com/bitville/bitville-apm/internal/mixin"
)

// TestRawTracesToLoki checks that the pg-exporter and pushgw push raw
// traces to the loki service and the agent pushes its own to pushgw only
// (with a --loki.url too they would reach Loki twice), that pushgw's
// tenants suit Loki's, that Loki keeps the ids as structured metadata
// (which needs schema v13 on tsdb), and that Grafana's Loki data source
// has the uid the dashboards preselect.
func TestRawTracesToLoki(t *testing.T) {
	p := loadProject(t)
	port := lokiHTTPPort(t, p)
	agent, gw := service(t, p, "agent"), service(t, p, "pushgw")
	if v := flagValue(agent.Command, "loki.url"); v != "" {
		t.Errorf("agent: --loki.url=%s beside --push.url: its raw traces would reach Loki directly and through pushgw", v)
	}
	if flagValue(agent.Command, "push.url") == "" {
		t.Error("agent: no --push.url: its raw traces reach no Loki")
	}
	// lokiHTTPPort holds Loki to auth_enabled: false, where Loki keeps
	// every push in one tenant and ignores X-Scope-OrgID: a tenant per
	// project would only pretend to separate them.
	if !slices.Contains(gw.Command, "--no-pushgw.loki-tenant-per-project") || flagValue(gw.Command, "loki.tenant") != "" {
		t.Errorf("pushgw: command %v; want --no-pushgw.loki-tenant-per-project and no --loki.tenant: loki.yml has auth_enabled: false, one tenant, the one Grafana reads", gw.Command)
	}
	for _, name := range []string{"pg-exporter", "pushgw"} {
		svc := service(t, p, name)
		raw := flagValue(svc.Command, "loki.url")
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "http" || u.Hostname() != "loki" || u.Port() != port || u.Path != "/loki/api/v1/push" {
			t.Errorf("%s: --loki.url=%q; want http://loki:%s/loki/api/v1/push (%v)", name, raw, port, err)
		}
		if _, ok := svc.DependsOn["loki"]; !ok {
			t.Errorf("%s: does not depend on loki", name)
		}
	}

	var cfg struct {
		SchemaConfig struct {
			Configs []struct {
				From   string `yaml:"from"`
				Store  string `yaml:"store"`
				Schema string `yaml:"schema"`
			} `yaml:"configs"`
		} `yaml:"schema_config"`
		LimitsConfig struct {
			AllowStructuredMetadata *bool `yaml:"allow_structured_metadata"`
		} `yaml:"limits_config"`
	}
	readYAML(t, filepath.Join(composeDir(t), "loki", "loki.yml"), &cfg)
	if a := cfg.LimitsConfig.AllowStructuredMetadata; a == nil || !*a {
		t.Error("loki.yml: limits_config.allow_structured_metadata must be true: the ids of the raw traces are structured metadata")
	}
	if n := len(cfg.SchemaConfig.Configs); n == 0 {
		t.Error("loki.yml: no schema_config")
	} else if last := cfg.SchemaConfig.Configs[n-1]; last.Store != "tsdb" || last.Schema != "v13" {
		t.Errorf("loki.yml: the current schema is %s on %s; structured metadata needs v13 on tsdb", last.Schema, last.Store)
	}

	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(composeDir(t), "grafana", "provisioning", "datasources", "datasources.yml"), &ds)
	found := false
	for _, d := range ds.Datasources {
		found = found || d.Type == "loki" && d.UID == mixin.LokiUID
	}
	if !found {
		t.Errorf("datasources.yml: no Loki data source of uid %q, the one the dashboards' loki variable preselects", mixin.LokiUID)
	}
}
