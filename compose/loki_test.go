package compose

import (
	"net/url"
	"path/filepath"
	"testing"

	"github.com/bitville/bitville-apm/internal/mixin"
)

// TestRawTracesToLoki checks that the agent and the pg-exporter push their
// raw traces to the loki service, that Loki keeps the ids as structured
// metadata (which needs schema v13 on tsdb), and that Grafana's Loki data
// source has the uid the dashboards preselect.
func TestRawTracesToLoki(t *testing.T) {
	p := loadProject(t)
	port := lokiHTTPPort(t, p)
	for _, name := range []string{"agent", "pg-exporter"} {
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
