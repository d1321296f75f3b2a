package compose

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

// These tests validate the compose stack without Docker (CI has none): what
// can be checked from the files alone is checked here, with the real tools
// where the machine has them (promtool, php-fpm, nginx, PostgreSQL, the
// bitville-apm binary built from this repository).
//
// One subject a file: composefile_test.go (the compose file itself),
// dockerfiles_test.go (the images' builds), flags_test.go (the bitville-apm
// command lines), prometheus_test.go, grafana_test.go (Grafana and Loki),
// and the real programs on the stack's files: postgres_test.go,
// fpm_test.go, nginx_test.go. This file holds what they share.

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func composeDir(t testing.TB) string {
	t.Helper()
	d, err := os.Getwd() // go test runs in the package's directory
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func repoRoot(t testing.TB) string { return filepath.Dir(composeDir(t)) }

// loadProject loads docker-compose.yml as docker compose does from this
// directory, with every ${VAR} at its default (no .env, no environment).
func loadProject(t testing.TB) *types.Project {
	t.Helper()
	dir := composeDir(t)
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, composeFile)},
		cli.WithWorkingDirectory(dir),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("%s does not follow the compose specification (compose-go loader, schema validation): %v", composeFile, err)
	}
	return p
}

func service(t testing.TB, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	svc, ok := p.Services[name]
	if !ok {
		t.Fatalf("%s has no service %s", composeFile, name)
	}
	return svc
}

func sortedServices(p *types.Project) []string {
	names := p.ServiceNames()
	slices.Sort(names)
	return names
}

func envValue(svc types.ServiceConfig, key string) (string, bool) {
	v, ok := svc.Environment[key]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

// flagValue returns the value of --name=value (or --name value) in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func listenPort(addr string) string {
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// location is where a path inside a service's container lives: a host
// path (Kind bind), a place in a named volume ("volume/path", Kind
// volume), or the image's own filesystem (Kind image, the path itself).
type location struct {
	Kind  string
	Where string
}

// locate resolves a container path through the service's mounts (the
// deepest mount that holds it).
func locate(svc types.ServiceConfig, containerPath string) location {
	containerPath = path.Clean(containerPath)
	var best *types.ServiceVolumeConfig
	for i := range svc.Volumes {
		v := &svc.Volumes[i]
		t := path.Clean(v.Target)
		if (containerPath == t || strings.HasPrefix(containerPath, strings.TrimSuffix(t, "/")+"/")) && (best == nil || len(t) > len(path.Clean(best.Target))) {
			best = v
		}
	}
	if best == nil {
		return location{Kind: "image", Where: containerPath}
	}
	r := strings.TrimPrefix(strings.TrimPrefix(containerPath, path.Clean(best.Target)), "/")
	if best.Type == types.VolumeTypeBind {
		return location{Kind: best.Type, Where: filepath.Join(best.Source, filepath.FromSlash(r))}
	}
	return location{Kind: best.Type, Where: path.Join(best.Source, r)}
}

func inside(root, p string) bool {
	r, err := filepath.Rel(root, p)
	return err == nil && r != ".." && !strings.HasPrefix(r, "../")
}

func rel(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil {
		return r
	}
	return p
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readYAML(t testing.TB, p string, v any) {
	t.Helper()
	if err := yaml.Unmarshal(readFile(t, p), v); err != nil {
		t.Fatalf("%s is not valid YAML: %v", p, err)
	}
}

// readINI reads key = value lines of a php-fpm or php.ini file (sections
// and ; comments ignored, quotes removed).
func readINI(t testing.TB, p string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(string(readFile(t, p)), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		out[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	return out
}

func stderrOf(err error) []byte {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.Stderr
	}
	return nil
}

func goTool(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("cannot find the go command (PATH, %s)", p)
	}
	return p
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// bitvilleBinary builds bitville-apm from this repository once per run.
func bitvilleBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "bitville-compose-test-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "bitville-apm")
		cmd := exec.Command(goTool(t), "build", "-o", binPath, "./cmd/bitville-apm")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/bitville-apm: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}
