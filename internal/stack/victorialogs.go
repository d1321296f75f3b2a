package stack

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"go/build"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// VictoriaLogsEnv names the environment variable that points at the
// victoria-logs binary when it is neither on PATH nor in $GOPATH/bin.
const VictoriaLogsEnv = "BITVILLE_VICTORIA_LOGS"

// VictoriaLogsConfig describes a throwaway VictoriaLogs, the log store the
// raw-trace tests push to through its Loki push endpoint.
type VictoriaLogsConfig struct {
	Dir    string // data and log (created); a second start on the same Dir finds the data of the first
	Port   int    // TCP port on 127.0.0.1; 0 picks a free one
	Binary string // default: VictoriaLogsBinary()
}

// VictoriaLogs is a running VictoriaLogs.
type VictoriaLogs struct {
	URL  string // http://127.0.0.1:port
	Port int
	Log  string

	proc   *process
	client *http.Client
}

// VictoriaLogsBinary finds victoria-logs: $BITVILLE_VICTORIA_LOGS, else on
// PATH, else in $GOPATH/bin where `go install` puts it. scripts/deps.sh
// installs it.
func VictoriaLogsBinary() (string, error) {
	if p := os.Getenv(VictoriaLogsEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("cannot use $%s: %w", VictoriaLogsEnv, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("victoria-logs"); err == nil {
		return p, nil
	}
	var tried []string
	for _, gp := range filepath.SplitList(build.Default.GOPATH) {
		p := filepath.Join(gp, "bin", "victoria-logs")
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("cannot find victoria-logs on PATH or at %s: scripts/deps.sh installs it, or set $%s", strings.Join(tried, ", "), VictoriaLogsEnv)
}

// StartVictoriaLogs starts VictoriaLogs with its data in c.Dir and returns
// once /health answers; ctx bounds only that wait.
func StartVictoriaLogs(ctx context.Context, c VictoriaLogsConfig) (*VictoriaLogs, error) {
	dir, err := preparePeer("VictoriaLogs", "VictoriaLogsConfig.Dir", c.Dir, "data", &c.Binary, VictoriaLogsBinary)
	if err != nil {
		return nil, err
	}
	v := &VictoriaLogs{Log: filepath.Join(dir, "victoria-logs.log"), client: &http.Client{Timeout: 10 * time.Second}}
	if err := onFreePort(c.Port, "VictoriaLogs", "address already in use", func(port int) error { return v.start(ctx, c.Binary, dir, port) }); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *VictoriaLogs) start(ctx context.Context, bin, dir string, port int) error {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// A one-second flush makes what was pushed searchable within a second
	// and on disk for a restart; a test's events are minutes old at most,
	// so one day of retention (the least it takes) is plenty.
	cmd := peerCommand(dir, bin, "-storageDataPath="+filepath.Join(dir, "data"), "-httpListenAddr="+addr,
		"-retentionPeriod=1d", "-inmemoryDataFlushInterval=1s", "-loggerLevel=WARN")
	proc, err := startHTTPPeer(ctx, "victoria-logs", cmd, v.Log, "http://"+addr+"/health")
	if err != nil {
		return err
	}
	v.proc, v.Port, v.URL = proc, port, "http://"+addr
	return nil
}

// PushURL is VictoriaLogs' Loki push endpoint, for --loki.url.
func (v *VictoriaLogs) PushURL() string { return v.URL + "/insert/loki/api/v1/push" }

// Query runs a LogsQL query and returns the matching entries, each as its
// fields (_msg, _time, _stream, the stream labels, the structured
// metadata and the fields parsed from a JSON line).
func (v *VictoriaLogs) Query(ctx context.Context, logsql string) ([]map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.URL+"/select/logsql/query?"+url.Values{"query": {logsql}}.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("cannot query VictoriaLogs: %w", err)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot query VictoriaLogs: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("VictoriaLogs query %q: HTTP %d: %s", logsql, resp.StatusCode, b)
	}
	// One JSON object a line, every value a string.
	var entries []map[string]string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e map[string]string
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("cannot decode VictoriaLogs' answer to %q: %w", logsql, err)
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read VictoriaLogs' answer to %q: %w", logsql, err)
	}
	return entries, nil
}

// PID returns VictoriaLogs' process id.
func (v *VictoriaLogs) PID() int { return v.proc.cmd.Process.Pid }

// Stop ends VictoriaLogs (SIGTERM, up to 10 seconds), which flushes its
// data to Dir: a StartVictoriaLogs on the same Dir and Port then serves
// what this one took.
func (v *VictoriaLogs) Stop() error {
	if v == nil || v.proc == nil {
		return nil
	}
	return v.proc.stop(syscall.SIGTERM, 10*time.Second)
}
