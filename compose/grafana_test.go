package compose

import (
	"encoding/json"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// TestGrafanaProvisioning checks the data sources (Prometheus and Loki, at
// the services' addresses) and the dashboard provider, whose path must be
// where the grafana service mounts the repository's dashboards/.
func TestGrafanaProvisioning(t *testing.T) {
	p := loadProject(t)
	root := repoRoot(t)
	grafana := service(t, p, "grafana")
	dir := filepath.Join(composeDir(t), "grafana", "provisioning")

	for _, sub := range []string{"datasources", "dashboards"} {
		target := "/etc/grafana/provisioning/" + sub
		if loc := locate(grafana, target); loc.Where != filepath.Join(dir, sub) {
			t.Errorf("grafana: %s is %s; want compose/grafana/provisioning/%s mounted there", target, loc.Where, sub)
		}
	}

	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name      string `yaml:"name"`
			Type      string `yaml:"type"`
			URL       string `yaml:"url"`
			IsDefault bool   `yaml:"isDefault"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(dir, "datasources", "datasources.yml"), &ds)
	if ds.APIVersion != 1 {
		t.Errorf("datasources.yml: apiVersion %d; want 1", ds.APIVersion)
	}
	lokiPort := lokiHTTPPort(t, p)
	want := map[string]string{"prometheus": "http://prometheus:9090", "loki": "http://loki:" + lokiPort}
	seen := map[string]bool{}
	defaults := 0
	for _, d := range ds.Datasources {
		if d.IsDefault {
			defaults++
			if d.Type != "prometheus" {
				t.Errorf("datasources.yml: the default data source %q is of type %s; the dashboards' datasource variable wants prometheus", d.Name, d.Type)
			}
		}
		u, ok := want[d.Type]
		if !ok {
			continue
		}
		seen[d.Type] = true
		if d.URL != u {
			t.Errorf("datasources.yml: %s data source %q at %s; want %s", d.Type, d.Name, d.URL, u)
		}
		if host, err := url.Parse(d.URL); err == nil {
			if _, ok := p.Services[host.Hostname()]; !ok {
				t.Errorf("datasources.yml: %s points at %s, which is not a service", d.Name, host.Hostname())
			}
		}
	}
	for typ := range want {
		if !seen[typ] {
			t.Errorf("datasources.yml: no data source of type %s", typ)
		}
	}
	if defaults != 1 {
		t.Errorf("datasources.yml: %d default data sources; want 1", defaults)
	}

	var dash struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name    string `yaml:"name"`
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(dir, "dashboards", "dashboards.yml"), &dash)
	if dash.APIVersion != 1 || len(dash.Providers) != 1 {
		t.Fatalf("dashboards.yml: apiVersion %d, %d providers; want 1 and 1", dash.APIVersion, len(dash.Providers))
	}
	prov := dash.Providers[0]
	if prov.Type != "file" {
		t.Errorf("dashboards.yml: provider type %q; want file", prov.Type)
	}
	loc := locate(grafana, prov.Options.Path)
	if loc.Where != filepath.Join(root, "dashboards") {
		t.Fatalf("dashboards.yml: the provider reads %s, which is %s in the grafana container; want the repository's dashboards/ mounted there", prov.Options.Path, loc.Where)
	}
	files, _ := filepath.Glob(filepath.Join(root, "dashboards", "*.json"))
	if len(files) == 0 {
		t.Fatal("dashboards/ holds no *.json dashboards")
	}
	for _, f := range files {
		var d struct {
			UID   string `json:"uid"`
			Title string `json:"title"`
		}
		if err := json.Unmarshal(readFile(t, f), &d); err != nil || d.UID == "" || d.Title == "" {
			t.Errorf("%s: not a dashboard (uid %q, title %q): %v", rel(root, f), d.UID, d.Title, err)
		}
	}
	if home, ok := envValue(grafana, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"); ok {
		if loc := locate(grafana, home); !slices.Contains(files, loc.Where) {
			t.Errorf("grafana: the home dashboard %s is %s, not one of dashboards/*.json", home, loc.Where)
		}
	}
}

// lokiHTTPPort reads the port of the Loki configuration the loki service
// runs with.
func lokiHTTPPort(t *testing.T, p *types.Project) string {
	t.Helper()
	loki := service(t, p, "loki")
	cfgPath := ""
	for _, a := range loki.Command {
		if v, ok := strings.CutPrefix(a, "-config.file="); ok {
			cfgPath = v
		}
	}
	loc := locate(loki, cfgPath)
	if loc.Where != filepath.Join(composeDir(t), "loki", "loki.yml") {
		t.Fatalf("loki -config.file=%s is %s; want compose/loki/loki.yml mounted there", cfgPath, loc.Where)
	}
	var cfg struct {
		AuthEnabled *bool `yaml:"auth_enabled"`
		Server      struct {
			HTTPListenPort int `yaml:"http_listen_port"`
		} `yaml:"server"`
		SchemaConfig struct {
			Configs []map[string]any `yaml:"configs"`
		} `yaml:"schema_config"`
	}
	readYAML(t, loc.Where, &cfg)
	if cfg.Server.HTTPListenPort == 0 || len(cfg.SchemaConfig.Configs) == 0 {
		t.Errorf("loki.yml: want server.http_listen_port and schema_config.configs")
	}
	if cfg.AuthEnabled == nil || *cfg.AuthEnabled {
		t.Errorf("loki.yml: auth_enabled must be false (single tenant; Grafana sends no tenant id)")
	}
	return strconv.Itoa(cfg.Server.HTTPListenPort)
}
