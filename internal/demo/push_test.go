package demo

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/mixin"
	"github.com/bitville/bitville-apm/internal/stack"
	"github.com/bitville/bitville-apm/pushgw"
)

func TestScrapeJobs(t *testing.T) {
	jobs := mixin.DefaultConfig()
	const node, agent, pg, gw = "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"
	for _, tc := range []struct {
		name       string
		pushgwAddr string
		want       []stack.ScrapeJob
	}{
		{"scrape the agent", "", []stack.ScrapeJob{
			{Name: jobs.NodeJob, Targets: []string{node}},
			{Name: jobs.AgentJob, Targets: []string{agent}},
			{Name: jobs.PgExporterJob, Targets: []string{pg}},
		}},
		{"scrape pushgw instead", gw, []stack.ScrapeJob{
			{Name: jobs.NodeJob, Targets: []string{node}},
			{Name: pushgwJob, Targets: []string{gw}, HonorLabels: true},
			{Name: jobs.PgExporterJob, Targets: []string{pg}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := scrapeJobs(jobs, node, agent, pg, tc.pushgwAddr)
			if !slices.EqualFunc(got, tc.want, func(a, b stack.ScrapeJob) bool {
				return a.Name == b.Name && a.HonorLabels == b.HonorLabels && slices.Equal(a.Targets, b.Targets)
			}) {
				t.Errorf("got %+v; want %+v", got, tc.want)
			}
		})
	}
}

func TestAgentPushArgs(t *testing.T) {
	dir := t.TempDir()
	files, err := writePushFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Dir: dir, ScrapeInterval: 5 * time.Second}
	args, err := agentPushArgs(o, "http://127.0.0.1:4", "127.0.0.1:2", files)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"--push.url=http://127.0.0.1:4",
		"--push.token-file=" + files.Token,
		"--push.interval=5s",        // the scrape interval
		"--push.instance=127.0.0.1", // the instance a scrape of the agent gets
	} {
		if !slices.Contains(args, want) {
			t.Errorf("got %v; want %s among them", args, want)
		}
	}
	if got := pushgwArgs(dir, "127.0.0.1:4", files); !slices.Contains(got, "--pushgw.tokens-file="+files.Tokens) || got[0] != "pushgw" {
		t.Errorf("got pushgw %v; want the command pushgw with --pushgw.tokens-file=%s", got, files.Tokens)
	}
	if _, err := agentPushArgs(o, "http://127.0.0.1:4", "no port", files); err == nil {
		t.Error("got no error for the agent address \"no port\"; want one")
	}
}

// TestPushFiles checks that pushgw's own parser takes the token file as
// the shop's.
func TestPushFiles(t *testing.T) {
	files, err := writePushFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(files.Tokens)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := pushgw.ParseTokens(b)
	if err != nil {
		t.Fatalf("got %v parsing %s; want no error", err, files.Tokens)
	}
	tok, err := os.ReadFile(files.Token)
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(tok), "\n")
	if got, ok := tokens.Project(strings.TrimSpace(line)); !ok || got != demoProject {
		t.Errorf("got project %q (%v) for the agent's token; want %q", got, ok, demoProject)
	}
}
