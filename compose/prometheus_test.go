package compose

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

type promConfig struct {
	Global struct {
		ScrapeInterval string `yaml:"scrape_interval"`
	} `yaml:"global"`
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
		RelabelConfigs []relabelRule `yaml:"relabel_configs"`
	} `yaml:"scrape_configs"`
}

type relabelRule struct {
	SourceLabels []string `yaml:"source_labels"`
	Separator    *string  `yaml:"separator"`
	Regex        *string  `yaml:"regex"`
	TargetLabel  string   `yaml:"target_label"`
	Replacement  *string  `yaml:"replacement"`
	Action       string   `yaml:"action"`
}

// TestPrometheusConfig runs promtool check config on prometheus.yml, with
// its rule files (container paths) mapped to the repository's files the
// prometheus service mounts there, and checks the jobs and the instance
// labels the rules join on.
func TestPrometheusConfig(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not on PATH: install it (Debian: apt-get install prometheus, or scripts/deps.sh) to check compose/prometheus/prometheus.yml")
	}
	p := loadProject(t)
	prom := service(t, p, "prometheus")
	cfgPath := flagValue(prom.Command, "config.file")
	if loc := locate(prom, cfgPath); loc.Where != filepath.Join(composeDir(t), "prometheus", "prometheus.yml") {
		t.Fatalf("prometheus --config.file=%s is %s; want compose/prometheus/prometheus.yml mounted there", cfgPath, loc.Where)
	}
	raw := readFile(t, filepath.Join(composeDir(t), "prometheus", "prometheus.yml"))
	var cfg promConfig
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("prometheus.yml is not valid YAML: %v", err)
	}
	// Grafana's Prometheus data source (timeInterval) and the rules'
	// 1-minute rates assume it.
	if cfg.Global.ScrapeInterval != "15s" {
		t.Errorf("prometheus.yml: global scrape_interval %q; want 15s", cfg.Global.ScrapeInterval)
	}

	// The rule files: the repository's alerts/, mounted read-only.
	root := repoRoot(t)
	hostRules := map[string]string{}
	for _, rf := range cfg.RuleFiles {
		loc := locate(prom, rf)
		if loc.Kind != types.VolumeTypeBind || !inside(root, loc.Where) {
			t.Errorf("rule file %s is not mounted from the repository (found %s %s)", rf, loc.Kind, loc.Where)
			continue
		}
		hostRules[rf] = loc.Where
	}
	for _, want := range []string{"recording.rules.yml", "alerts.rules.yml"} {
		if !slices.ContainsFunc(slices.Collect(maps.Values(hostRules)), func(h string) bool { return h == filepath.Join(root, "alerts", want) }) {
			t.Errorf("prometheus.yml does not load alerts/%s", want)
		}
	}

	// A copy with the rule files at their host paths, for promtool.
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "rule_files" {
			for _, item := range top.Content[i+1].Content {
				if h, ok := hostRules[item.Value]; ok {
					item.Value = h
				}
			}
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := exec.Command(promtool, "check", "config", tmp).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config (prometheus.yml with rule_files mapped to %v): %v\n%s", slices.Sorted(maps.Values(hostRules)), err, res)
	}

	// The jobs the alerts select, scraping the services on their ports.
	ports := map[string]string{
		"node-exporter": "9100",
		"agent":         listenPort(flagValue(service(t, p, "agent").Command, "web.listen-address")),
		"pg-exporter":   listenPort(flagValue(service(t, p, "pg-exporter").Command, "web.listen-address")),
	}
	if v := flagValue(service(t, p, "node-exporter").Command, "web.listen-address"); v != "" {
		ports["node-exporter"] = listenPort(v)
	}
	wantJobs := map[string]string{"node": "node-exporter", "bitville-agent": "agent", "bitville-pg-exporter": "pg-exporter"}
	instances := map[string][]string{}
	for _, job := range cfg.ScrapeConfigs {
		svcName, ok := wantJobs[job.JobName]
		if !ok {
			continue
		}
		for _, sc := range job.StaticConfigs {
			for _, target := range sc.Targets {
				if want := svcName + ":" + ports[svcName]; target != want {
					t.Errorf("job %s scrapes %s; want %s", job.JobName, target, want)
				}
				labels := map[string]string{"__address__": target, "job": job.JobName}
				for k, v := range sc.Labels {
					labels[k] = v
				}
				inst, err := relabelInstance(labels, job.RelabelConfigs)
				if err != nil {
					t.Errorf("job %s: %v", job.JobName, err)
				}
				instances[job.JobName] = append(instances[job.JobName], inst)
			}
		}
	}
	for job := range wantJobs {
		if len(instances[job]) != 1 {
			t.Errorf("job %s: %d targets; want one (job names must be node, bitville-agent, bitville-pg-exporter)", job, len(instances[job]))
		}
	}
	if t.Failed() {
		return
	}
	node, ag, pgx := instances["node"][0], instances["bitville-agent"][0], instances["bitville-pg-exporter"][0]
	// node_exporter and the agent describe the same host (the load alert
	// joins them); PostgreSQL runs on that host too (the database alert
	// joins the pg-exporter to node_exporter's CPU count).
	if node != ag || node != pgx {
		t.Errorf("instance labels differ: node %q, bitville-agent %q, bitville-pg-exporter %q; the rules join them on instance (alerts/README.md)", node, ag, pgx)
	}
	if node == "" || strings.Contains(node, ":") {
		t.Errorf("instance %q: want a host name without port", node)
	}

	// The same through Prometheus's own relabeling (promtool 2.38 and
	// later). Static targets are there at once; promtool waits out
	// --timeout whatever it found.
	if help, _ := exec.Command(promtool, "check", "--help").CombinedOutput(); !bytes.Contains(help, []byte("service-discovery")) {
		t.Logf("this promtool has no check service-discovery: the instance labels were checked by this test's own relabeling only")
		return
	}
	for job := range wantJobs {
		res, err := exec.Command(promtool, "check", "service-discovery", "--timeout=2s", tmp, job).Output()
		if err != nil {
			t.Errorf("promtool check service-discovery %s: %v\n%s", job, err, stderrOf(err))
			continue
		}
		var targets []struct {
			Labels map[string]string `json:"labels"`
		}
		if err := json.Unmarshal(res, &targets); err != nil {
			t.Errorf("promtool check service-discovery %s: %v\n%s", job, err, res)
			continue
		}
		if len(targets) != 1 || targets[0].Labels["instance"] != node {
			t.Errorf("promtool check service-discovery %s: %s; want one target with instance %q", job, res, node)
		}
	}
}

// relabelInstance applies relabel rules (the replace action, the only one
// used here) to a target's labels as Prometheus does and returns its
// instance label.
func relabelInstance(labels map[string]string, rules []relabelRule) (string, error) {
	for i, r := range rules {
		if r.Action != "" && r.Action != "replace" {
			return "", fmt.Errorf("relabel rule %d: action %q: this test evaluates replace rules only", i, r.Action)
		}
		sep, expr, repl := ";", "(.*)", "$1"
		if r.Separator != nil {
			sep = *r.Separator
		}
		if r.Regex != nil {
			expr = *r.Regex
		}
		if r.Replacement != nil {
			repl = *r.Replacement
		}
		re, err := regexp.Compile("^(?:" + expr + ")$")
		if err != nil {
			return "", fmt.Errorf("relabel rule %d: %v", i, err)
		}
		var vals []string
		for _, l := range r.SourceLabels {
			vals = append(vals, labels[l])
		}
		val := strings.Join(vals, sep)
		idx := re.FindStringSubmatchIndex(val)
		if idx == nil {
			continue
		}
		res := string(re.ExpandString(nil, repl, val, idx))
		if res == "" {
			delete(labels, r.TargetLabel)
		} else {
			labels[r.TargetLabel] = res
		}
	}
	if inst, ok := labels["instance"]; ok {
		return inst, nil
	}
	return labels["__address__"], nil
}
