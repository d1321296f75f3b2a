package compose

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestBitvilleFlags checks the agent's, the pg-exporter's and pushgw's
// command lines against `bitville-apm <command> --help` of the binary
// built from this repository: every flag must exist.
func TestBitvilleFlags(t *testing.T) {
	p := loadProject(t)
	bin := bitvilleBinary(t)
	for _, name := range []string{"agent", "pg-exporter", "pushgw"} {
		svc := service(t, p, name)
		if len(svc.Command) == 0 {
			t.Errorf("service %s has no command", name)
			continue
		}
		sub := svc.Command[0]
		out, err := exec.Command(bin, sub, "--help").CombinedOutput()
		if err != nil {
			t.Errorf("service %s: bitville-apm %s --help: %v\n%s", name, sub, err, out)
			continue
		}
		known := map[string]bool{}
		for _, m := range regexp.MustCompile(`--(\[no-\])?([a-z][a-z0-9.-]*)`).FindAllStringSubmatch(string(out), -1) {
			known[m[2]] = true
			if m[1] != "" {
				known["no-"+m[2]] = true
			}
		}
		for _, arg := range svc.Command[1:] {
			flag, ok := strings.CutPrefix(arg, "--")
			if !ok {
				t.Errorf("service %s: argument %q: write flags as --name=value", name, arg)
				continue
			}
			flag, _, _ = strings.Cut(flag, "=")
			if !known[flag] {
				t.Errorf("service %s: bitville-apm %s has no flag --%s (see bitville-apm %s --help)", name, sub, flag, sub)
			}
		}
	}
	agent := service(t, p, "agent")
	uri := flagValue(agent.Command, "fpm.status-uri")
	if !regexp.MustCompile(`^(unix:///[^;]+;/\S*|tcp://[^/]+/\S*)$`).MatchString(uri) {
		t.Errorf("agent: --fpm.status-uri=%q is neither unix:///path/to/socket;/status nor tcp://host:port/status", uri)
	}
}
