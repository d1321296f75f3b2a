package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"

	"github.com/bitville/bitville-apm/internal/promapi"
	pushwire "github.com/bitville/bitville-apm/internal/push"
	"github.com/bitville/bitville-apm/internal/stack"
)

// The projects of the push tests and their tokens: shop's is in the tokens
// file as itself, blog's as its SHA-256.
const (
	e2eShopToken = "shop-e2e-token-0123456789"
	e2eBlogToken = "blog-e2e-token-0123456789"
)

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// tokensFile writes pushgw's tokens file for shop (with shopToken) and blog.
func tokensFile(t *testing.T, dir, shopToken string) string {
	return writeFile(t, filepath.Join(dir, "tokens.yml"),
		"projects:\n  shop: "+shopToken+"\n  blog: sha256:"+sha256Hex(e2eBlogToken)+"\n")
}

// startPushgw starts `bitville-apm pushgw` with args and waits until it is
// ready.
func startPushgw(t *testing.T, bin string, args ...string) *agentProcess {
	t.Helper()
	all := append([]string{"--log.format=json", "pushgw", "--web.listen-address=127.0.0.1:0", "--events.batch-wait=200ms"}, args...)
	p := launchDaemon(t, exec.Command(bin, all...), "", "http")
	waitReady(t, p)
	return p
}

// pushingAgent starts an agent of project that pushes to base with token
// every second, named instance.
func pushingAgent(t *testing.T, bin, base, token, instance string) *agentProcess {
	t.Helper()
	dir := t.TempDir()
	return startAgent(t, bin,
		"--no-agent.check-pids", "--no-host.enabled",
		"--push.url="+base,
		"--push.token-file="+writeFile(t, filepath.Join(dir, "token"), token+"\n"),
		"--push.interval=1s",
		"--push.instance="+instance,
		"--push.spool-dir="+filepath.Join(dir, "push"),
		"--events.spool-dir="+filepath.Join(dir, "events"),
		"--events.batch-wait=200ms",
		"--events.rate-limit=10000", "--events.rate-burst=10000")
}

// projectEnd is an end message of project's request i to endpoint, slow
// (shipped as a raw trace) when wall is over a second.
func projectEnd(i int, project, endpoint string, wall float64, status int) []byte {
	now := time.Now().Unix()
	return fmt.Appendf(nil, `{"v":1,"type":"end","id":"%s-r%d","pid":%d,"project":%q,"ts":%d,"cid":"%s-c%d","method":"GET","endpoint":%q,"uri":"/x/%d","started":%d,"status":%d,"wall":%g,"cpu_user":0.01,"mem_peak":4194304,"sql":[{"q":"SELECT * FROM t WHERE id = %d","d":0.001,"rows":1}]}`,
		project, i, 1000+i%500, project, now, project, i, endpoint, i, now, status, wall, i)
}

// startLokiRecorder serves a lokiRecorder until the test ends and returns
// it with its push URL, for --loki.url.
func startLokiRecorder(t *testing.T) (*lokiRecorder, string) {
	t.Helper()
	loki := &lokiRecorder{}
	srv := httptest.NewServer(loki)
	t.Cleanup(srv.Close)
	return loki, srv.URL + "/loki/api/v1/push"
}

// startVictoriaMetrics starts a VictoriaMetrics with its data in dir,
// stopped when the test ends.
func startVictoriaMetrics(t *testing.T, ctx context.Context, dir string) *stack.VictoriaMetrics {
	t.Helper()
	vm, err := stack.StartVictoriaMetrics(ctx, stack.VictoriaMetricsConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vm.Stop() })
	return vm
}

// lokiRecorder is a Loki push endpoint that keeps each entry with its
// tenant and stream labels.
type lokiRecorder struct {
	mu      sync.Mutex
	entries []lokiEntry
}

type lokiEntry struct {
	tenant, labels, line string
}

func (l *lokiRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	raw, err := snappy.Decode(nil, b)
	var req push.PushRequest
	if err == nil {
		err = req.Unmarshal(raw)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range req.Streams {
		for _, e := range s.Entries {
			l.entries = append(l.entries, lokiEntry{tenant: r.Header.Get("X-Scope-OrgID"), labels: s.Labels, line: e.Line})
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (l *lokiRecorder) all() []lokiEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]lokiEntry(nil), l.entries...)
}

// vector runs expr at now and keys each sample by its labels.
func vector(t *testing.T, ctx context.Context, c *promapi.Client, expr string) map[string]float64 {
	t.Helper()
	samples, err := c.Query(ctx, expr, time.Now())
	if err != nil {
		t.Fatalf("query %s: %v", expr, err)
	}
	out := map[string]float64{}
	for _, s := range samples {
		keys := make([]string, 0, len(s.Metric))
		for k, v := range s.Metric {
			keys = append(keys, k+"="+v)
		}
		sort.Strings(keys)
		out[strings.Join(keys, ",")] = s.Value
	}
	return out
}

func sameVector(a, b map[string]float64) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func hostPort(t *testing.T, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// The queries whose answers must not depend on the road the series took:
// scraped from the agents, scraped from pushgw, remote-written by pushgw.
var pushQueries = []string{
	`sum by (project, endpoint, status) (bitville_php_requests_total{%s})`,
	`sum by (project, le) (bitville_php_request_duration_seconds_bucket{%s})`,
	`sum by (project) (bitville_php_sql_calls_total{%s})`,
}

// TestPushgwEndToEnd: two agents of two projects push through pushgw with
// their own tokens; a real Prometheus scrapes pushgw (honor_labels) and the
// agents directly, another real Prometheus takes pushgw's remote write, and
// all three give the same answers. Events reach Loki under their
// project's tenant. Then an agent dies and its series expire, and SIGHUP
// swaps a token.
func TestPushgwEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := buildBinary(t)
	dir := t.TempDir()

	receiver, err := stack.StartPrometheus(ctx, stack.PrometheusConfig{Dir: filepath.Join(dir, "receiver"), RemoteWriteReceiver: true, ScrapeInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = receiver.Stop() })
	loki, lokiURL := startLokiRecorder(t)

	tokens := tokensFile(t, dir, e2eShopToken)
	gw := startPushgw(t, bin,
		"--pushgw.tokens-file="+tokens,
		"--remote-write.url="+receiver.RemoteWriteURL(),
		"--loki.url="+lokiURL,
		"--events.spool-dir="+filepath.Join(dir, "gw-events"))
	shop := pushingAgent(t, bin, gw.base, e2eShopToken, "shop-web-1")
	blog := pushingAgent(t, bin, gw.base, e2eBlogToken, "blog-web-1")

	scraper, err := stack.StartPrometheus(ctx, stack.PrometheusConfig{
		Dir:            filepath.Join(dir, "scraper"),
		ScrapeInterval: time.Second,
		Jobs: []stack.ScrapeJob{
			{Name: "pushgw", Targets: []string{hostPort(t, gw.base)}, HonorLabels: true},
			{Name: "direct-shop", Targets: []string{hostPort(t, shop.base)}},
			{Name: "direct-blog", Targets: []string{hostPort(t, blog.base)}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = scraper.Stop() })

	var shopMsgs, blogMsgs [][]byte
	for i := 0; i < 40; i++ {
		shopMsgs = append(shopMsgs, projectEnd(i, "shop", []string{"GET /orders/{id}", "GET /cart", "POST /pay"}[i%3], 0.01*float64(i%7+1), 200+300*(i%10/9)))
		blogMsgs = append(blogMsgs, projectEnd(i, "blog", []string{"GET /post/{id}", "GET /"}[i%2], 0.02*float64(i%5+1), 200))
	}
	shopMsgs = append(shopMsgs, projectEnd(100, "shop", "GET /report", 2.5, 200))
	blogMsgs = append(blogMsgs, projectEnd(100, "blog", "GET /feed", 3.0, 500))
	shop.send(t, shopMsgs...)
	blog.send(t, blogMsgs...)

	promScraper, _ := promapi.New(scraper.URL)
	promReceiver, _ := promapi.New(receiver.URL)
	for _, q := range pushQueries {
		direct := fmt.Sprintf(q, `job=~"direct-.*"`)
		pushed := fmt.Sprintf(q, `job="bitville-apm-agent"`)
		var a, b, c map[string]float64
		deadline := time.Now().Add(60 * time.Second)
		for {
			a = vector(t, ctx, promScraper, direct)
			b = vector(t, ctx, promScraper, pushed)
			c = vector(t, ctx, promReceiver, pushed)
			if sameVector(a, b) && sameVector(a, c) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s differs by road after 60s:\nscraped from the agents %v\nscraped from pushgw     %v\nremote-written          %v", q, a, b, c)
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("%s: %d series, equal on all three roads", q, len(a))
	}

	// Every series pushgw serves is under the project of the token that
	// pushed it, and the pushing instance.
	out := shop.scrapeURL(t, gw.base+"/metrics")
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "bitville_php_requests_total{") {
			proj := "shop"
			if strings.Contains(l, `project="blog"`) {
				proj = "blog"
			}
			if !strings.Contains(l, `instance="`+proj+`-web-1"`) || !strings.Contains(l, `job="bitville-apm-agent"`) {
				t.Errorf("pushed series without its pushing job and instance: %s", l)
			}
		}
	}

	// The slow requests' events, each under its project's tenant, with the
	// agent's job and the pushing instance.
	waitFor(t, 30*time.Second, func() bool {
		n := 0
		for _, e := range loki.all() {
			if strings.Contains(e.line, `"kind":"request"`) {
				n++
			}
		}
		return n >= 2
	})
	slow := map[string]bool{}
	for _, e := range loki.all() {
		if !strings.Contains(e.line, `"kind":"request"`) {
			continue
		}
		want := "blog"
		if strings.Contains(e.line, `"project":"shop"`) {
			want = "shop"
		}
		if strings.Contains(e.line, `"slow"`) {
			slow[want] = true
		}
		if e.tenant != want || !strings.Contains(e.labels, `project="`+want+`"`) || !strings.Contains(e.labels, `instance="`+want+`-web-1"`) || !strings.Contains(e.labels, `job="bitville-apm-agent"`) {
			t.Errorf("event of %s: tenant %q, labels %s; want tenant %s, its project, job and instance", want, e.tenant, e.labels, want)
		}
	}
	if !slow["shop"] || !slow["blog"] {
		t.Errorf("slow request events reached Loki for %v; want shop and blog", slow)
	}

	// A dead agent's series go after three push intervals, and pushgw says
	// so.
	_ = blog.cmd.Process.Kill()
	<-blog.done
	blogDown := `bitville_pushgw_instance_up{instance="blog-web-1",job="bitville-apm-agent",project="blog"} 0`
	waitFor(t, 30*time.Second, func() bool { return strings.Contains(shop.scrapeURL(t, gw.base+"/metrics"), blogDown) })
	out = shop.scrapeURL(t, gw.base+"/metrics")
	if strings.Contains(pushedOf(out, "blog"), "bitville_php_requests_total") {
		t.Errorf("the dead agent's series are still served:\n%s", pushedOf(out, "blog"))
	}
	if !strings.Contains(pushedOf(out, "shop"), "bitville_php_requests_total") {
		t.Error("the live agent's series went with the dead one's")
	}

	// SIGHUP: shop's token changes; the old one is refused, the new one
	// taken.
	newShop := "shop-e2e-token-rotated-0123456789"
	tokensFile(t, dir, newShop)
	if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return rawPush(t, gw.base, e2eShopToken) == http.StatusUnauthorized })
	if code := rawPush(t, gw.base, newShop); code != http.StatusOK {
		t.Errorf("push with the new token after SIGHUP: got %d; want 200", code)
	}
	stopDaemon(t, shop)
	stopDaemon(t, gw)
}

// rawPush pushes one small snapshot to base with token and returns the
// status.
func rawPush(t *testing.T, base, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+pushwire.MetricsPath, strings.NewReader("rotation_probe 1\n"))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", pushwire.MetricsContentType)
	req.Header.Set(pushwire.HeaderJob, "probe")
	req.Header.Set(pushwire.HeaderInstance, "probe")
	req.Header.Set(pushwire.HeaderBatch, pushwire.BatchID{Boot: "00000000000000ff", Seq: uint64(time.Now().UnixNano())}.String())
	req.Header.Set(pushwire.HeaderTime, fmt.Sprint(time.Now().UnixMilli()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// pushedOf is the pushed bitville_php_ lines of project in a pushgw
// scrape.
func pushedOf(exposition, project string) string {
	var out []string
	for _, l := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(l, "bitville_php_") && (strings.Contains(l, `,project="`+project+`"`) || strings.Contains(l, `{project="`+project+`"`)) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// scrapeURL reads a text exposition from url.
func (p *agentProcess) scrapeURL(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("cannot scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// roundRobin is the load balancer in front of the replicas: each request
// goes to the next one.
type roundRobin struct {
	next    atomic.Uint64
	proxies []*httputil.ReverseProxy
}

func newRoundRobin(t *testing.T, bases ...string) *httptest.Server {
	rr := &roundRobin{}
	for _, b := range bases {
		u, err := url.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		rr.proxies = append(rr.proxies, httputil.NewSingleHostReverseProxy(u))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rr.proxies[rr.next.Add(1)%uint64(len(rr.proxies))].ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestPushgwReplicas: two pushgw replicas behind a round-robin balancer,
// both remote-writing to one VictoriaMetrics. An agent's pushes land on
// either; the store still answers as the agent's own /metrics does, and
// each event reaches Loki once.
func TestPushgwReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := buildBinary(t)
	dir := t.TempDir()
	vm := startVictoriaMetrics(t, ctx, filepath.Join(dir, "vm"))
	loki, lokiURL := startLokiRecorder(t)
	tokens := tokensFile(t, dir, e2eShopToken)
	var bases []string
	for i := 0; i < 2; i++ {
		gw := startPushgw(t, bin,
			"--pushgw.tokens-file="+tokens,
			"--remote-write.url="+vm.RemoteWriteURL(),
			"--loki.url="+lokiURL,
			fmt.Sprintf("--events.spool-dir=%s/gw%d-events", dir, i))
		bases = append(bases, gw.base)
	}
	lb := newRoundRobin(t, bases...)
	shop := pushingAgent(t, bin, lb.URL, e2eShopToken, "shop-web-1")

	var msgs [][]byte
	for i := 0; i < 30; i++ {
		msgs = append(msgs, projectEnd(i, "shop", []string{"GET /orders/{id}", "GET /cart"}[i%2], 1.5, 200))
	}
	shop.send(t, msgs...)

	promVM, _ := promapi.New(vm.URL())
	var direct, stored map[string]float64
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := shop.scrape(t)
		direct = map[string]float64{}
		for _, ep := range []string{"GET /orders/{id}", "GET /cart"} {
			direct[ep] = value(out, `bitville_php_requests_total{endpoint="`+ep+`"`)
		}
		got := vector(t, ctx, promVM, `sum by (endpoint) (bitville_php_requests_total{project="shop",instance="shop-web-1"})`)
		stored = map[string]float64{}
		for k, v := range got {
			stored[strings.TrimPrefix(k, "endpoint=")] = v
		}
		if direct["GET /cart"] == 15 && sameVector(direct, stored) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("VictoriaMetrics behind two replicas answers %v; the agent's /metrics %v", stored, direct)
		}
		time.Sleep(500 * time.Millisecond)
	}
	waitFor(t, 60*time.Second, func() bool { return len(loki.all()) >= len(msgs) })
	time.Sleep(2 * time.Second) // a duplicate would come within a batch wait
	seen := map[string]int{}
	for _, e := range loki.all() {
		seen[e.line]++
	}
	for line, n := range seen {
		if n != 1 {
			t.Errorf("event reached Loki %d times: %s", n, line)
		}
	}
	if len(seen) != len(msgs) {
		t.Errorf("got %d distinct events; want %d", len(seen), len(msgs))
	}
}

// freePort is a TCP port on 127.0.0.1 nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestPushgwOutage: pushgw goes away while an agent keeps taking requests,
// and the agent itself restarts before pushgw is back. Its spools keep
// the snapshots and events: once pushgw returns, the counts of the
// outage reach the remote store at the time they were taken, and every
// event reaches Loki.
func TestPushgwOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := buildBinary(t)
	dir := t.TempDir()
	vm := startVictoriaMetrics(t, ctx, filepath.Join(dir, "vm"))
	loki, lokiURL := startLokiRecorder(t)
	tokens := tokensFile(t, dir, e2eShopToken)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	gateway := func() *agentProcess {
		p := launchDaemon(t, exec.Command(bin, "--log.format=json", "pushgw", "--web.listen-address="+addr, "--events.batch-wait=200ms",
			"--pushgw.tokens-file="+tokens, "--remote-write.url="+vm.RemoteWriteURL(),
			"--loki.url="+lokiURL, "--events.spool-dir="+filepath.Join(dir, "gw-events")), "", "http")
		return p
	}
	agentDir := t.TempDir()
	tokenFile := writeFile(t, filepath.Join(agentDir, "token"), e2eShopToken+"\n")
	agent := func() *agentProcess {
		return startAgent(t, bin, "--no-agent.check-pids", "--no-host.enabled",
			"--push.url=http://"+addr, "--push.token-file="+tokenFile, "--push.interval=1s", "--push.instance=shop-web-1",
			"--push.spool-dir="+filepath.Join(agentDir, "push"), "--events.spool-dir="+filepath.Join(agentDir, "events"),
			"--events.batch-wait=200ms", "--events.backoff-max=1s", "--events.breaker-probe=2s",
			"--events.rate-limit=10000", "--events.rate-burst=10000")
	}
	promVM, _ := promapi.New(vm.URL())
	stored := func() float64 {
		v := vector(t, ctx, promVM, `sum(max_over_time(bitville_php_requests_total{instance="shop-web-1"}[10m]))`)
		return v[""]
	}
	slowBatch := func(from int) [][]byte {
		var msgs [][]byte
		for i := from; i < from+10; i++ {
			msgs = append(msgs, projectEnd(i, "shop", "GET /orders/{id}", 1.5, 200))
		}
		return msgs
	}

	gw := gateway()
	a := agent()
	a.send(t, slowBatch(0)...)
	waitFor(t, 60*time.Second, func() bool { return stored() == 10 })

	stopDaemon(t, gw) // the outage
	a.send(t, slowBatch(10)...)
	waitFor(t, 30*time.Second, func() bool { return value(a.scrape(t), "bitville_push_pushes_total{result=\"failed\"}") >= 2 })
	if got := value(a.scrape(t), "bitville_push_spool_snapshots"); got < 1 {
		t.Errorf("during the outage the spool holds %v snapshots; want some", got)
	}
	stopDaemon(t, a) // its counts now live only in its spool
	outageEnd := time.Now()

	gateway()
	agent()
	waitFor(t, 60*time.Second, func() bool { return stored() == 20 })
	// The outage's snapshots arrived with the time they were taken.
	samples, err := promVM.Query(ctx, `sum(bitville_php_requests_total{instance="shop-web-1"})`, outageEnd.Add(-time.Second))
	if err != nil || len(samples) != 1 || samples[0].Value != 20 {
		t.Errorf("the store at the end of the outage: got %v, %v; want 20 requests then", samples, err)
	}
	waitFor(t, 60*time.Second, func() bool {
		seen := map[string]bool{}
		for _, e := range loki.all() {
			seen[e.line] = true
		}
		return len(seen) >= 20
	})
}

// TestPushgwAlone: the gateway with only its tokens, Prometheus scraping
// it, nothing to forward to: ready, takes metrics, refuses events for
// good.
func TestPushgwAlone(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	gw := startPushgw(t, bin, "--pushgw.tokens-file="+tokensFile(t, dir, e2eShopToken))
	if code := rawPush(t, gw.base, e2eShopToken); code != http.StatusOK {
		t.Errorf("metrics push: got %d; want 200", code)
	}
	body := `{"kind":"request","level":"info","line":{}}` + "\n"
	req, _ := http.NewRequest(http.MethodPost, gw.base+pushwire.EventsPath, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e2eShopToken)
	req.Header.Set(pushwire.HeaderJob, "probe")
	req.Header.Set(pushwire.HeaderInstance, "probe")
	req.Header.Set(pushwire.HeaderBatch, sha256Hex(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("events push without an event sink: got %d; want 422", resp.StatusCode)
	}
	if out := gw.scrapeURL(t, gw.base+"/metrics"); !strings.Contains(out, `rotation_probe{job="probe",instance="probe",project="shop"} 1`) {
		t.Errorf("the pushed sample is not served:\n%s", grepLines(out, "rotation_probe"))
	}
	stopDaemon(t, gw)
}
