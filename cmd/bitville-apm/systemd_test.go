package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const deployDir = "../../deploy"

// unitFile is a parsed systemd unit: each key's values in file order, with
// continuation lines joined.
type unitFile map[string][]string

func readUnit(t *testing.T, path string) (unitFile, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	var pending string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		if pending == "" && (strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") || strings.HasPrefix(line, "[") || strings.TrimSpace(line) == "") {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			pending += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		line = pending + line
		pending = ""
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: cannot parse line %q", path, line)
		}
		u[k] = append(u[k], strings.TrimSpace(v))
	}
	return u, string(b)
}

// one returns the single value of key.
func (u unitFile) one(t *testing.T, key string) string {
	t.Helper()
	if len(u[key]) != 1 {
		t.Fatalf("got %d values of %s; want 1", len(u[key]), key)
	}
	return u[key][0]
}

// execArgs splits an Exec line as systemd would for our units, which use no
// quoting: a quote would need systemd's rules, so it fails the test instead.
func execArgs(t *testing.T, line string) []string {
	t.Helper()
	if strings.ContainsAny(line, `"'$%`) {
		t.Fatalf("Exec line %q uses quoting or specifiers; teach this test systemd's rules first", line)
	}
	return strings.Fields(line)
}

// flagValue returns the value of --name=value in args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// TestSystemdUnits checks each unit under deploy/systemd with
// systemd-analyze verify (any warning about the unit fails), parses its
// ExecStart with the binary's own command line (every flag exists, every
// value parses), and checks the facts that must agree across files: the
// agent's socket inside the unit's RuntimeDirectory and given to a group the
// daemon is in, the user from deploy/sysusers.d, and one datagram queue
// length in the unit, deploy/sysctl and the flag's default.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found (Debian package systemd): the units are not verified")
	}
	bin := buildBinary(t)
	units, err := filepath.Glob(filepath.Join(deployDir, "systemd", "*.service"))
	if err != nil || len(units) != 3 {
		t.Fatalf("got units %v, %v; want the agent's, the pg-exporter's and pushgw's", units, err)
	}
	sysusers := readSysusers(t)
	for _, path := range units {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			u, text := readUnit(t, path)
			args := execArgs(t, u.one(t, "ExecStart"))
			if args[0] != "/usr/local/bin/bitville-apm" {
				t.Fatalf("ExecStart runs %s; want /usr/local/bin/bitville-apm, where the install lines put it", args[0])
			}

			// systemd-analyze needs ExecStart's binary to exist: verify a copy
			// that runs the one just built.
			copyPath := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(text, "/usr/local/bin/bitville-apm", bin)), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, analyze, "verify", "--man=no", copyPath).CombinedOutput()
			if err != nil {
				t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if strings.Contains(line, name) || strings.Contains(line, copyPath) {
					t.Errorf("systemd-analyze verify: %s", line)
				} else if line != "" {
					t.Logf("systemd-analyze verify (not about this unit): %s", line)
				}
			}

			// The environment the install lines write (echo 'BITVILLE_X=…').
			for _, m := range regexp.MustCompile(`echo '(BITVILLE_[A-Z_]+)=([^']*)'`).FindAllStringSubmatch(text, -1) {
				t.Setenv(m[1], m[2])
			}
			var cli CLI
			parser, err := newParser(&cli)
			if err != nil {
				t.Fatal(err)
			}
			kctx, err := parser.Parse(args[1:])
			if err != nil {
				t.Fatalf("the binary's parser rejects ExecStart %q: %v", args[1:], err)
			}
			// And the built binary itself: an unknown flag fails even with --help.
			if out, err := exec.CommandContext(ctx, bin, append(args[1:], "--help")...).CombinedOutput(); err != nil {
				t.Errorf("%s %s --help: %v\n%s", bin, strings.Join(args[1:], " "), err, out)
			}

			user := u.one(t, "User")
			if !sysusers[user] {
				t.Errorf("User=%s is not created by deploy/sysusers.d (users: %v)", user, sysusers)
			}
			if _, dyn := u["DynamicUser"]; dyn {
				t.Errorf("DynamicUser= set: it implies RestrictSUIDSGID=yes, see the unit's comments")
			}
			if kctx.Command() != "agent" {
				return
			}
			checkAgentUnit(t, u, args, cli.Agent)
		})
	}
}

func checkAgentUnit(t *testing.T, u unitFile, args []string, agent AgentCmd) {
	t.Helper()
	if got, want := filepath.Dir(agent.Socket), "/run/"+u.one(t, "RuntimeDirectory"); got != want {
		t.Errorf("socket %s is not in the RuntimeDirectory %s", agent.Socket, want)
	}
	if _, ok := flagValue(args, "agent.socket-group"); !ok {
		t.Errorf("ExecStart lacks --agent.socket-group: the PHP workers could not write to the socket")
	}
	groups := append(strings.Fields(strings.Join(u["SupplementaryGroups"], " ")), u.one(t, "Group"))
	found := false
	for _, g := range groups {
		found = found || g == agent.SocketGroup
	}
	if !found {
		t.Errorf("socket group %s is neither Group= nor in SupplementaryGroups= %v: the daemon could not give the socket to it", agent.SocketGroup, groups)
	}
	if mode := u.one(t, "RuntimeDirectoryMode"); mode != "0711" && mode != "0751" && mode != "0755" {
		t.Errorf("RuntimeDirectoryMode=%s: the PHP workers cannot pass through to the socket", mode)
	}
	if v := u.one(t, "RuntimeDirectoryPreserve"); v != "yes" {
		t.Errorf("RuntimeDirectoryPreserve=%s; want yes, so spooled messages survive a stop", v)
	}
	if v, ok := u["RestrictSUIDSGID"]; ok && v[0] != "no" {
		t.Errorf("RestrictSUIDSGID=%s forbids the set-group-id spool directory", v[0])
	}

	// One datagram queue length: the ExecStartPre step, deploy/sysctl and
	// the flag's default.
	var pre string
	for _, line := range u["ExecStartPre"] {
		if strings.Contains(line, "net.unix.max_dgram_qlen=") {
			pre = line[strings.LastIndex(line, "=")+1:]
		}
	}
	b, err := os.ReadFile(filepath.Join(deployDir, "sysctl", "90-bitville-apm.conf"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^net\.unix\.max_dgram_qlen\s*=\s*(\d+)$`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("deploy/sysctl/90-bitville-apm.conf does not set net.unix.max_dgram_qlen")
	}
	if want := agentDefaultMinQueueLen(t); pre != want || m[1] != want {
		t.Errorf("net.unix.max_dgram_qlen: unit ExecStartPre %q, deploy/sysctl %q, --agent.min-queue-length default %q; want them equal", pre, m[1], want)
	}
}

// agentDefaultMinQueueLen is --agent.min-queue-length's default, as the
// binary parses it.
func agentDefaultMinQueueLen(t *testing.T) string {
	t.Helper()
	var cli CLI
	parser, err := newParser(&cli)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse([]string{"agent"}); err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(cli.Agent.MinQueueLen)
}

// readSysusers returns the users deploy/sysusers.d creates, after
// systemd-sysusers (when installed) has read the file without a complaint.
func readSysusers(t *testing.T) map[string]bool {
	t.Helper()
	path, err := filepath.Abs(filepath.Join(deployDir, "sysusers.d", "bitville-apm.conf"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "u" {
			users[f[1]] = true
		}
	}
	sysusers, err := exec.LookPath("systemd-sysusers")
	if err != nil {
		t.Log("systemd-sysusers not found: deploy/sysusers.d is not checked by it")
		return users
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, sysusers, "--dry-run", "--root="+t.TempDir(), path).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-sysusers --dry-run %s: %v\n%s", path, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, filepath.Base(path)) {
			t.Errorf("systemd-sysusers: %s", line)
		}
	}
	for u := range users {
		if !strings.Contains(string(out), "Creating user '"+u+"'") {
			t.Errorf("systemd-sysusers --dry-run does not create %s:\n%s", u, out)
		}
	}
	return users
}
