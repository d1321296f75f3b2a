package compose

import (
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

// promConfig is what the tests read of prometheus.yml themselves; what
// Prometheus makes of the scrape configurations (targets, relabelling)
// comes from promtool.
type promConfig struct {
	Global struct {
		ScrapeInterval string `yaml:"scrape_interval"`
	} `yaml:"global"`
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName     string `yaml:"job_name"`
		HonorLabels bool   `yaml:"honor_labels"`
	} `yaml:"scrape_configs"`
}

// TestPrometheusConfig runs promtool check config on prometheus.yml, with
// its rule files (container paths) mapped to the repository's files the
// prometheus service mounts there, then promtool check service-discovery
// on the same file for the jobs the rules select: their targets and the
// instance labels the rules join on, as Prometheus relabels them. The
// agent is not scraped: it pushes to pushgw, scraped with honor_labels,
// under the instance the other jobs get and at the scrape interval.
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

	// The jobs the alerts select, scraping the services on their ports,
	// and the instance label each target gets from Prometheus's own
	// relabelling.
	ports := map[string]string{
		"node-exporter": "9100",
		"pushgw":        listenPort(flagValue(service(t, p, "pushgw").Command, "web.listen-address")),
		"pg-exporter":   listenPort(flagValue(service(t, p, "pg-exporter").Command, "web.listen-address")),
	}
	if v := flagValue(service(t, p, "node-exporter").Command, "web.listen-address"); v != "" {
		ports["node-exporter"] = listenPort(v)
	}
	wantJobs := map[string]string{"node": "node-exporter", "pushgw": "pushgw", "bitville-pg-exporter": "pg-exporter"}
	jobs := slices.Sorted(maps.Keys(wantJobs))
	var jobNames []string
	for _, sc := range cfg.ScrapeConfigs {
		jobNames = append(jobNames, sc.JobName)
		// Without honor_labels every pushed series would get job="pushgw"
		// and the gateway's instance, its own as exported_job and
		// exported_instance.
		if got, want := sc.HonorLabels, sc.JobName == "pushgw"; got != want {
			t.Errorf("prometheus.yml: job %s has honor_labels %v; want %v (only the push gateway's series carry their own job and instance)", sc.JobName, got, want)
		}
	}
	for _, job := range jobs {
		if !slices.Contains(jobNames, job) {
			t.Errorf("prometheus.yml has no job %s (job names must be node, pushgw, bitville-pg-exporter)", job)
		}
	}
	if slices.Contains(jobNames, "bitville-agent") {
		t.Error("prometheus.yml scrapes the agent (job bitville-agent), which pushes to pushgw: every PHP series would be counted twice")
	}

	// The agent pushes to the gateway Prometheus scrapes, once a scrape.
	agent := service(t, p, "agent")
	if got, want := flagValue(agent.Command, "push.url"), "http://pushgw:"+ports["pushgw"]; got != want {
		t.Errorf("agent --push.url=%s; want %s, the pushgw service", got, want)
	}
	if got := flagValue(agent.Command, "push.interval"); got != cfg.Global.ScrapeInterval {
		t.Errorf("agent --push.interval=%s; want prometheus.yml's scrape_interval %s: a slower push makes scrapes repeat a snapshot, a faster one pushes snapshots no scrape sees", got, cfg.Global.ScrapeInterval)
	}
	if t.Failed() {
		return
	}
	instances := map[string]string{}
	for job, targets := range discoveredTargets(t, promtool, tmp, jobs) {
		svcName := wantJobs[job]
		if len(targets) != 1 {
			t.Errorf("job %s: %d targets %v; want one, %s:%s", job, len(targets), targets, svcName, ports[svcName])
			continue
		}
		if got, want := targets[0]["__address__"], svcName+":"+ports[svcName]; got != want {
			t.Errorf("job %s scrapes %s; want %s", job, got, want)
		}
		if got := targets[0]["job"]; got != job {
			t.Errorf("job %s: its target has job=%q", job, got)
		}
		instances[job] = targets[0]["instance"]
	}
	if t.Failed() {
		return
	}
	node, gw, pgx := instances["node"], instances["pushgw"], instances["bitville-pg-exporter"]
	// The agent's pushed series keep the instance it pushes with
	// (honor_labels).
	ag := flagValue(agent.Command, "push.instance")
	// node_exporter and the agent describe the same host (the load alert
	// joins them); PostgreSQL runs on that host too (the database alert
	// joins the pg-exporter to node_exporter's CPU count).
	if node != ag || node != pgx || node != gw {
		t.Errorf("instance labels differ: node %q, the agent's --push.instance %q, pushgw %q, bitville-pg-exporter %q; the rules join them on instance (alerts/README.md)", node, ag, gw, pgx)
	}
	if node == "" || strings.Contains(node, ":") {
		t.Errorf("instance %q: want a host name without port", node)
	}

	// With exporters on several real hosts prometheus.yml says to drop
	// __host__: then the first rule alone must name each target's host,
	// its address without the port.
	var hostless yaml.Node
	if err := yaml.Unmarshal(out, &hostless); err != nil {
		t.Fatal(err)
	}
	if n := deleteKey(&hostless, "__host__"); n != len(jobs) {
		t.Errorf("prometheus.yml: %d target groups have a __host__ label; want one per job, %d", n, len(jobs))
	}
	noHost, err := yaml.Marshal(&hostless)
	if err != nil {
		t.Fatal(err)
	}
	noHostPath := filepath.Join(filepath.Dir(tmp), "prometheus-no-host.yml")
	if err := os.WriteFile(noHostPath, noHost, 0o644); err != nil {
		t.Fatal(err)
	}
	for job, targets := range discoveredTargets(t, promtool, noHostPath, jobs) {
		if len(targets) != 1 || targets[0]["instance"] != wantJobs[job] {
			t.Errorf("job %s without __host__: targets %v; want one with instance %q", job, targets, wantJobs[job])
		}
	}
}

// discoveredTargets runs promtool check service-discovery on the Prometheus
// configuration config for each job, concurrently, and returns each job's
// targets: their labels after relabelling, as Prometheus would scrape them.
// Static targets are there at once; promtool waits out --timeout whatever
// it found.
func discoveredTargets(t *testing.T, promtool, config string, jobs []string) map[string][]map[string]string {
	t.Helper()
	type result struct {
		out []byte
		err error
	}
	results := make([]result, len(jobs))
	var wg sync.WaitGroup
	for i, job := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command(promtool, "check", "service-discovery", "--timeout=2s", config, job).Output()
			results[i] = result{out, err}
		}()
	}
	wg.Wait()
	targets := map[string][]map[string]string{}
	for i, job := range jobs {
		r := results[i]
		if r.err != nil {
			t.Fatalf("promtool check service-discovery %s %s (promtool 2.38 or later has it): %v\n%s", filepath.Base(config), job, r.err, stderrOf(r.err))
		}
		var ts []struct {
			Labels map[string]string `json:"labels"`
		}
		if err := json.Unmarshal(r.out, &ts); err != nil {
			t.Fatalf("promtool check service-discovery %s %s: %v\n%s", filepath.Base(config), job, err, r.out)
		}
		targets[job] = []map[string]string{}
		for _, tg := range ts {
			targets[job] = append(targets[job], tg.Labels)
		}
	}
	return targets
}

// deleteKey removes every mapping entry named key from the YAML document
// and returns how many it removed.
func deleteKey(n *yaml.Node, key string) int {
	removed := 0
	if n.Kind == yaml.MappingNode {
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				removed++
				continue
			}
			kept = append(kept, n.Content[i], n.Content[i+1])
		}
		n.Content = kept
	}
	for _, c := range n.Content {
		removed += deleteKey(c, key)
	}
	return removed
}
