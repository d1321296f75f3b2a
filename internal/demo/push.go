package demo

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/bitville/bitville-apm/internal/mixin"
	"github.com/bitville/bitville-apm/internal/stack"
)

// pushgwJob is the scrape job of the push gateway. The pushed series keep
// the job the agent pushes with (bitville-apm-agent): the job only
// names the gateway's own series and its up.
const pushgwJob = "pushgw"

// demoProject is the project of the example shop (BITVILLE_APM_PROJECT),
// the one the demo's push token authenticates.
const demoProject = "shop"

// pushFiles are the files of the demo's push: the gateway's tokens file
// and the agent's token file, one fresh token for the shop.
type pushFiles struct {
	Tokens string // pushgw --pushgw.tokens-file
	Token  string // agent --push.token-file
}

// writePushFiles draws a token and writes both files into dir, readable
// by their owner only.
func writePushFiles(dir string) (pushFiles, error) {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return pushFiles{}, fmt.Errorf("cannot draw a push token: %w", err)
	}
	token := hex.EncodeToString(raw[:])
	f := pushFiles{Tokens: filepath.Join(dir, "pushgw-tokens.yml"), Token: filepath.Join(dir, "push-token")}
	tokens := fmt.Sprintf("# The demo's only project and its token, drawn at start.\nprojects:\n  %s: %q\n", demoProject, token)
	if err := os.WriteFile(f.Tokens, []byte(tokens), 0o600); err != nil {
		return pushFiles{}, fmt.Errorf("cannot write pushgw's tokens file: %w", err)
	}
	if err := os.WriteFile(f.Token, []byte(token+"\n"), 0o600); err != nil {
		return pushFiles{}, fmt.Errorf("cannot write the agent's push token file: %w", err)
	}
	return f, nil
}

// pushgwArgs are the gateway's command line. The demo has no Loki, so the
// gateway forwards no events: it refuses the agent's (422, no_event_sink)
// and the agent drops them, as it ships none without push. Its spool only
// has to be somewhere writable.
func pushgwArgs(dir, addr string, f pushFiles) []string {
	return []string{"pushgw", "--web.listen-address=" + addr, "--pushgw.tokens-file=" + f.Tokens,
		"--events.spool-dir=" + filepath.Join(dir, "pushgw-events")}
}

// agentPushArgs are the agent's flags that push its /metrics to the
// gateway at url once per scrape interval. The instance is the one a
// scrape of agentAddr would have given the agent (its host without the
// port, the relabelling of internal/stack), so the rules still join the
// agent's series to node_exporter's on instance.
func agentPushArgs(o Options, url, agentAddr string, f pushFiles) ([]string, error) {
	host, _, err := net.SplitHostPort(agentAddr)
	if err != nil {
		return nil, fmt.Errorf("cannot take the agent's instance from %q: %w", agentAddr, err)
	}
	return []string{"--push.url=" + url, "--push.token-file=" + f.Token,
		"--push.interval=" + o.ScrapeInterval.String(), "--push.instance=" + host,
		"--push.spool-dir=" + filepath.Join(o.Dir, "agent-push"),
		// With push.url the agent ships its raw traces to the gateway,
		// through a spool of its own.
		"--events.spool-dir=" + filepath.Join(o.Dir, "agent-events")}, nil
}

// scrapeJobs are Prometheus's jobs: node_exporter, the pg-exporter, and
// the agent, or, when it pushes (pushgwAddr set), the gateway instead
// with honor_labels, so the pushed series keep their job and instance.
func scrapeJobs(jobs mixin.Config, nodeAddr, agentAddr, pgAddr, pushgwAddr string) []stack.ScrapeJob {
	agent := stack.ScrapeJob{Name: jobs.AgentJob, Targets: []string{agentAddr}}
	if pushgwAddr != "" {
		agent = stack.ScrapeJob{Name: pushgwJob, Targets: []string{pushgwAddr}, HonorLabels: true}
	}
	return []stack.ScrapeJob{
		{Name: jobs.NodeJob, Targets: []string{nodeAddr}},
		agent,
		{Name: jobs.PgExporterJob, Targets: []string{pgAddr}},
	}
}
