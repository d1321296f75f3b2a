package compose

// These tests validate the compose stack without Docker (CI has none): what
// can be checked from the files alone is checked here, with the real tools
// where the machine has them (promtool, php-fpm, nginx, PostgreSQL, the
// bitville-apm binary built from this repository).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/bitville/bitville-apm/internal/stack"
)

const composeFile = "docker-compose.yml"

// The services of the stack and the ports each publishes (host = container).
var (
	wantServices = []string{"agent", "grafana", "loki", "nginx", "node-exporter", "pg-exporter", "postgres", "prometheus", "shop"}
	wantPorts    = map[string][]string{
		"grafana":     {"3000"},
		"prometheus":  {"9090"},
		"nginx":       {"8080"},
		"agent":       {"19100"},
		"pg-exporter": {"19101"},
	}
	// Host paths (outside the repository) a service may bind-mount.
	hostMounts = map[string][]string{"node-exporter": {"/proc", "/sys"}}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// --- The compose file -------------------------------------------------------

// TestComposeFileFormat loads docker-compose.yml with compose-go, the
// compose specification's reference loader: YAML, the specification's
// JSON schema, interpolation, path resolution and the consistency checks
// (depends_on, volumes and networks that exist, image or build).
func TestComposeFileFormat(t *testing.T) {
	raw := readFile(t, filepath.Join(composeDir(t), composeFile))
	var top map[string]any
	if err := yaml.Unmarshal(raw, &top); err != nil {
		t.Fatalf("%s is not valid YAML: %v", composeFile, err)
	}
	if _, ok := top["version"]; ok {
		t.Errorf("%s has a top-level `version` key: the compose specification has none (docker compose warns it is obsolete)", composeFile)
	}
	allowed := []string{"name", "services", "networks", "volumes", "configs", "secrets", "include", "models"}
	for k := range top {
		if !slices.Contains(allowed, k) && !strings.HasPrefix(k, "x-") {
			t.Errorf("%s: unknown top-level key %q (allowed: %s, x-*)", composeFile, k, strings.Join(allowed, ", "))
		}
	}

	p := loadProject(t)
	names := p.ServiceNames()
	slices.Sort(names)
	if !slices.Equal(names, wantServices) {
		t.Errorf("services: got %v; want %v", names, wantServices)
	}
	for _, name := range names {
		svc := p.Services[name]
		if svc.Image == "" && svc.Build == nil {
			t.Errorf("service %s has neither image nor build", name)
		}
		var got []string
		for _, port := range svc.Ports {
			if port.Published != strconv.Itoa(int(port.Target)) {
				t.Errorf("service %s publishes container port %d on host port %s; want the same number", name, port.Target, port.Published)
			}
			// The default keeps the stack (default passwords, anonymous
			// Grafana) off the network: BITVILLE_BIND_ADDRESS opens it.
			if port.HostIP != "127.0.0.1" {
				t.Errorf("service %s publishes port %s on %q by default; want 127.0.0.1", name, port.Published, port.HostIP)
			}
			got = append(got, port.Published)
		}
		slices.Sort(got)
		if want := wantPorts[name]; !slices.Equal(got, want) {
			t.Errorf("service %s publishes ports %v; want %v", name, got, want)
		}
	}
}

// TestComposeVariables checks that every ${VAR} of docker-compose.yml has
// a default, so the stack starts without a .env file, and that
// .env.example lists exactly those variables with the same defaults.
func TestComposeVariables(t *testing.T) {
	raw := readFile(t, filepath.Join(composeDir(t), composeFile))
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s is not valid YAML: %v", composeFile, err)
	}
	ref := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}`)
	defaults := map[string]string{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode {
			for _, m := range ref.FindAllStringSubmatch(n.Value, -1) {
				name, mod := m[1], m[2]
				def, ok := strings.CutPrefix(mod, ":-")
				if !ok {
					t.Errorf("%s line %d: ${%s%s} has no default; write ${%s:-value} and add it to .env.example", composeFile, n.Line, name, mod, name)
					continue
				}
				if prev, seen := defaults[name]; seen && prev != def {
					t.Errorf("%s line %d: ${%s} has the default %q here and %q elsewhere", composeFile, n.Line, name, def, prev)
				}
				defaults[name] = def
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
	if len(defaults) == 0 {
		t.Fatalf("%s uses no ${VAR:-default} settings; the passwords and the bind address should be", composeFile)
	}

	example, err := dotenv.Read(filepath.Join(composeDir(t), ".env.example"))
	if err != nil {
		t.Fatalf(".env.example: %v", err)
	}
	for name, def := range defaults {
		v, ok := example[name]
		switch {
		case !ok:
			t.Errorf(".env.example does not list %s (used by %s, default %q)", name, composeFile, def)
		case v != def:
			t.Errorf(".env.example sets %s=%q; the default in %s is %q: keep them the same", name, v, composeFile, def)
		}
	}
	for name := range example {
		if _, ok := defaults[name]; !ok {
			t.Errorf(".env.example lists %s, which %s does not use", name, composeFile)
		}
	}
}

// TestBuildsAndMountsExist checks every build context, Dockerfile, file
// a Dockerfile copies, env file and bind-mount source: all must exist in
// the repository, and repository files must be mounted read-only.
func TestBuildsAndMountsExist(t *testing.T) {
	p := loadProject(t)
	root := repoRoot(t)
	for _, name := range sortedServices(p) {
		svc := p.Services[name]
		if svc.Build != nil {
			checkBuild(t, root, name, svc.Build)
		}
		for _, ef := range svc.EnvFiles {
			if _, err := os.Stat(ef.Path); err != nil {
				t.Errorf("service %s: env_file %s: %v", name, ef.Path, err)
			}
		}
		for _, v := range svc.Volumes {
			switch v.Type {
			case types.VolumeTypeBind:
				if inside(root, v.Source) {
					if _, err := os.Stat(v.Source); err != nil {
						t.Errorf("service %s mounts %s at %s, which does not exist: %v", name, rel(root, v.Source), v.Target, err)
					}
					if !v.ReadOnly {
						t.Errorf("service %s mounts %s at %s read-write; mount repository files read-only (:ro)", name, rel(root, v.Source), v.Target)
					}
				} else if !slices.Contains(hostMounts[name], v.Source) {
					t.Errorf("service %s mounts the host path %s: only %v may be mounted from outside the repository", name, v.Source, hostMounts)
				}
			case types.VolumeTypeVolume:
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("service %s mounts the undeclared volume %s", name, v.Source)
				}
			default:
				t.Errorf("service %s: mount of type %s at %s: expected bind mounts and named volumes only", name, v.Type, v.Target)
			}
		}
	}

	// The postgres image runs executable *.sh init scripts and sources
	// the others into its own shell: a checkout that lost the mode would
	// run them with the entrypoint's options.
	initdb := locate(service(t, p, "postgres"), "/docker-entrypoint-initdb.d")
	scripts, _ := filepath.Glob(filepath.Join(initdb.Where, "*.sh"))
	if len(scripts) == 0 {
		t.Errorf("postgres: no init scripts in %s", initdb.Where)
	}
	for _, s := range scripts {
		if st, err := os.Stat(s); err == nil && st.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable (chmod +x; git update-index --chmod=+x)", rel(root, s))
		}
	}
}

func checkBuild(t *testing.T, root, name string, b *types.BuildConfig) {
	t.Helper()
	ctxDir := b.Context
	if st, err := os.Stat(ctxDir); err != nil || !st.IsDir() {
		t.Errorf("service %s: build context %s is not a directory: %v", name, ctxDir, err)
		return
	}
	if !inside(root, ctxDir) {
		t.Errorf("service %s: build context %s is outside the repository", name, ctxDir)
	}
	df := dockerfilePath(b)
	steps, err := parseDockerfile(df)
	if err != nil {
		t.Errorf("service %s: %v", name, err)
		return
	}
	ignore, ignoreFile := dockerignore(df, ctxDir)
	for _, s := range steps {
		if (s.Instruction != "COPY" && s.Instruction != "ADD") || s.From != "" {
			continue
		}
		for _, src := range s.Sources {
			if strings.Contains(src, "://") {
				continue
			}
			matches, _ := filepath.Glob(filepath.Join(ctxDir, filepath.FromSlash(src)))
			if len(matches) == 0 {
				t.Errorf("service %s: %s line %d copies %s, which is not in the build context %s", name, rel(root, df), s.Line, src, rel(root, ctxDir))
				continue
			}
			// Files the ignore file drops inside a copied directory are
			// meant to stay out (tests, testdata); a source must keep at
			// least one file.
			kept := 0
			for _, m := range matches {
				_ = filepath.WalkDir(m, func(p string, d os.DirEntry, err error) error {
					if err != nil || d.IsDir() {
						return err
					}
					if !ignore.excludes(filepath.ToSlash(rel(ctxDir, p))) {
						kept++
						return filepath.SkipAll
					}
					return nil
				})
			}
			if kept == 0 {
				t.Errorf("service %s: %s line %d copies %s, but %s excludes all of it from the build context", name, rel(root, df), s.Line, src, rel(root, ignoreFile))
			}
		}
	}
}

// TestAgentImageHasWhatGoBuildNeeds checks the agent image's build against
// the Go build of bitville-apm: every file of the module's packages it
// compiles is copied into the build stage and not dropped by the
// Dockerfile's ignore file, and the golang image is the go.mod version.
func TestAgentImageHasWhatGoBuildNeeds(t *testing.T) {
	p := loadProject(t)
	root := repoRoot(t)
	b := service(t, p, "agent").Build
	if b == nil {
		t.Fatal("service agent has no build")
	}
	if filepath.Clean(b.Context) != root {
		t.Fatalf("service agent builds from %s; the Go build needs the module root %s as context", b.Context, root)
	}
	df := dockerfilePath(b)
	steps, err := parseDockerfile(df)
	if err != nil {
		t.Fatal(err)
	}
	var copied []string
	goImage := ""
	for _, s := range steps {
		if s.Instruction == "FROM" && strings.HasPrefix(s.Args, "golang:") {
			goImage = strings.Fields(s.Args)[0]
		}
		if s.Instruction == "COPY" && s.From == "" {
			for _, src := range s.Sources {
				copied = append(copied, path.Clean(src))
			}
		}
	}
	ignore, ignoreFile := dockerignore(df, b.Context)

	gomod := string(readFile(t, filepath.Join(root, "go.mod")))
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	if !strings.HasPrefix(goImage, "golang:"+m[1]+"-") && goImage != "golang:"+m[1] {
		t.Errorf("%s builds with %q; go.mod says go %s: use golang:%s-bookworm", rel(root, df), goImage, m[1], m[1])
	}

	cmd := exec.Command(goTool(t), "list", "-deps", "-json", "./cmd/bitville-apm")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderrOf(err))
	}
	need := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var pkg struct {
			Dir                                                   string
			Standard                                              bool
			GoFiles, CgoFiles, CFiles, HFiles, SFiles, EmbedFiles []string
		}
		if err := dec.Decode(&pkg); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if pkg.Standard || !inside(root, pkg.Dir) {
			continue
		}
		for _, list := range [][]string{pkg.GoFiles, pkg.CgoFiles, pkg.CFiles, pkg.HFiles, pkg.SFiles, pkg.EmbedFiles} {
			for _, f := range list {
				need = append(need, filepath.ToSlash(rel(root, filepath.Join(pkg.Dir, f))))
			}
		}
	}
	if len(need) < 10 {
		t.Fatalf("go list found only %v: not the bitville-apm build", need)
	}
	for _, f := range need {
		if !slices.ContainsFunc(copied, func(src string) bool { return src == "." || f == src || strings.HasPrefix(f, src+"/") }) {
			t.Errorf("the Go build needs %s, which %s does not COPY (it copies %v)", f, rel(root, df), copied)
		}
		if ignore.excludes(f) {
			t.Errorf("the Go build needs %s, which %s excludes from the build context", f, rel(root, ignoreFile))
		}
	}
}

// TestBitvilleFlags checks the agent's and the pg-exporter's command
// lines against `bitville-apm <command> --help` of the binary built from
// this repository: every flag must exist.
func TestBitvilleFlags(t *testing.T) {
	p := loadProject(t)
	bin := bitvilleBinary(t)
	for _, name := range []string{"agent", "pg-exporter"} {
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

// TestServicesAgree checks what the services share: the sockets and the
// slowlog (same volume, same path), the document root, the agent's
// settings in the pool, the database names and passwords, and the agent's
// view of the php-fpm workers' pids.
func TestServicesAgree(t *testing.T) {
	p := loadProject(t)
	root := repoRoot(t)
	shop, agent, nginx := service(t, p, "shop"), service(t, p, "agent"), service(t, p, "nginx")
	pool := readINI(t, filepath.Join(composeDir(t), "shop", "php-fpm.d", "www.conf"))

	// The php-fpm pool files the shop container reads are these.
	fpmd := locate(shop, "/usr/local/etc/php-fpm.d")
	if fpmd.Where != filepath.Join(composeDir(t), "shop", "php-fpm.d") {
		t.Errorf("shop: /usr/local/etc/php-fpm.d is %s; want compose/shop/php-fpm.d mounted there", fpmd.Where)
	}

	// Pool settings the brief and the agent rely on.
	for k, want := range map[string]string{
		"pm.status_path":            "/status",
		"request_slowlog_timeout":   "1s",
		"request_terminate_timeout": "30s",
	} {
		if got := pool[k]; got != want {
			t.Errorf("www.conf: %s = %q; want %q", k, got, want)
		}
	}
	if pool["slowlog"] == "" || pool["listen"] == "" {
		t.Fatalf("www.conf: slowlog (%q) and listen (%q) must be set", pool["slowlog"], pool["listen"])
	}

	// The pool's environment: env[NAME] = $VAR copies the container's VAR.
	poolEnv := map[string]string{}
	for k, v := range pool {
		name, ok := strings.CutPrefix(k, "env[")
		if !ok {
			continue
		}
		name = strings.TrimSuffix(name, "]")
		if from, ok := strings.CutPrefix(v, "$"); ok {
			val, set := envValue(shop, from)
			if !set {
				t.Errorf("www.conf: env[%s] = $%s, but service shop does not set %s", name, from, from)
			}
			v = val
		}
		poolEnv[name] = v
	}
	for k, want := range map[string]string{
		"BITVILLE_APM_ENABLED": "1",
		"BITVILLE_APM_PROJECT": "shop",
		"BITVILLE_APM_SOCKET":  "/run/bitville-apm/agent.sock",
		"APP_DB_USER":          "shop",
	} {
		if got := poolEnv[k]; got != want {
			t.Errorf("the pool's %s is %q; want %q", k, got, want)
		}
	}
	if dsn := poolEnv["APP_DB_DSN"]; !strings.HasPrefix(dsn, "pgsql:") || !strings.Contains(dsn, "host=postgres;") || !strings.HasSuffix(dsn, "dbname=shop") {
		t.Errorf("the pool's APP_DB_DSN is %q; want pgsql:host=postgres;port=5432;dbname=shop", dsn)
	}

	// The agent's socket: one path, one volume, for PHP and the agent.
	sock := flagValue(agent.Command, "agent.socket")
	if sock != poolEnv["BITVILLE_APM_SOCKET"] {
		t.Errorf("agent --agent.socket=%s, the pool's BITVILLE_APM_SOCKET=%s: must be the same", sock, poolEnv["BITVILLE_APM_SOCKET"])
	}
	sameVolume(t, "the agent socket", sock, map[string]types.ServiceConfig{"agent": agent, "shop": shop})

	// php-fpm's socket: nginx and the agent's status reads use the pool's.
	uri := flagValue(agent.Command, "fpm.status-uri")
	statusSock, statusPath, ok := strings.Cut(strings.TrimPrefix(uri, "unix://"), ";")
	if !strings.HasPrefix(uri, "unix://") || !ok {
		t.Errorf("agent --fpm.status-uri=%s: expected unix://<the pool's listen socket>;<pm.status_path>", uri)
	} else {
		if statusSock != pool["listen"] {
			t.Errorf("agent --fpm.status-uri socket %s; the pool listens on %s", statusSock, pool["listen"])
		}
		if statusPath != pool["pm.status_path"] {
			t.Errorf("agent --fpm.status-uri path %s; the pool's pm.status_path is %s", statusPath, pool["pm.status_path"])
		}
	}
	site := string(readFile(t, filepath.Join(composeDir(t), "nginx", "shop.conf")))
	pass := regexp.MustCompile(`(?m)^\s*fastcgi_pass\s+unix:([^;\s]+);`).FindStringSubmatch(site)
	if pass == nil {
		t.Fatalf("nginx/shop.conf has no fastcgi_pass unix:...;")
	}
	if pass[1] != pool["listen"] {
		t.Errorf("nginx fastcgi_pass unix:%s; the pool listens on %s", pass[1], pool["listen"])
	}
	sameVolume(t, "php-fpm's socket", pool["listen"], map[string]types.ServiceConfig{"shop": shop, "agent": agent, "nginx": nginx})
	if conf := locate(nginx, "/etc/nginx/conf.d/shop.conf"); conf.Where != filepath.Join(composeDir(t), "nginx", "shop.conf") {
		t.Errorf("nginx: /etc/nginx/conf.d/shop.conf is %s; want compose/nginx/shop.conf", conf.Where)
	}

	// The slowlog.
	if got := flagValue(agent.Command, "fpm.slowlog"); got != pool["slowlog"] {
		t.Errorf("agent --fpm.slowlog=%s; the pool's slowlog is %s", got, pool["slowlog"])
	}
	sameVolume(t, "the slowlog", pool["slowlog"], map[string]types.ServiceConfig{"shop": shop, "agent": agent})

	// The document root: the same files for nginx and php-fpm.
	docRoot := regexp.MustCompile(`(?m)^\s*root\s+([^;\s]+);`).FindStringSubmatch(site)
	if docRoot == nil {
		t.Fatal("nginx/shop.conf has no root")
	}
	inNginx, inShop := locate(nginx, docRoot[1]), locate(shop, docRoot[1])
	if inNginx.Where != inShop.Where || inNginx.Where != filepath.Join(root, "php", "examples", "public") {
		t.Errorf("document root %s is %s in nginx and %s in shop; want php/examples/public in both", docRoot[1], inNginx.Where, inShop.Where)
	}

	// The agent is loaded by auto_prepend_file from the mounted php/.
	ini := readINI(t, filepath.Join(composeDir(t), "shop", "php.ini"))
	if loc := locate(shop, "/usr/local/etc/php/conf.d/zz-bitville-apm.ini"); loc.Where != filepath.Join(composeDir(t), "shop", "php.ini") {
		t.Errorf("shop: compose/shop/php.ini is not mounted into php's conf.d (found %s)", loc.Where)
	}
	prepend := ini["auto_prepend_file"]
	if loc := locate(shop, prepend); loc.Where != filepath.Join(root, "php", "bootstrap.php") {
		t.Errorf("auto_prepend_file = %q is %s in the shop container; want the repository's php/bootstrap.php", prepend, loc.Where)
	}

	// The agent looks up the workers' pids in its own PID namespace.
	if agent.Pid != "service:shop" && !slices.Contains(agent.Command, "--no-agent.check-pids") {
		t.Errorf("agent: pid is %q and --agent.check-pids is on: it would abandon every request (the workers' pids are not in its PID namespace); use pid: service:shop or --no-agent.check-pids", agent.Pid)
	}

	// The database: names and passwords agree between the services.
	pg := service(t, p, "postgres")
	if !slices.Contains(pg.Command, "shared_preload_libraries=pg_stat_statements") {
		t.Errorf("postgres command %v does not preload pg_stat_statements", pg.Command)
	}
	shopPassword, _ := envValue(pg, "SHOP_DB_PASSWORD")
	if poolEnv["APP_DB_PASSWORD"] != shopPassword || shopPassword == "" {
		t.Errorf("the shop's APP_DB_PASSWORD %q differs from the SHOP_DB_PASSWORD %q the database is initialised with", poolEnv["APP_DB_PASSWORD"], shopPassword)
	}
	exporter := service(t, p, "pg-exporter")
	dsn, err := url.Parse(flagValue(exporter.Command, "pg.dsn"))
	if err != nil {
		t.Fatalf("pg-exporter --pg.dsn: %v", err)
	}
	if dsn.Hostname() != "postgres" || dsn.Path != "/shop" || dsn.User.Username() != "bitville" {
		t.Errorf("pg-exporter --pg.dsn: host %s, database %s, user %s; want postgres, shop, bitville", dsn.Hostname(), strings.TrimPrefix(dsn.Path, "/"), dsn.User.Username())
	}
	exporterPassword, ok := dsn.User.Password()
	if !ok {
		exporterPassword, _ = envValue(exporter, "PGPASSWORD")
	}
	if want, _ := envValue(pg, "BITVILLE_PG_PASSWORD"); exporterPassword != want || want == "" {
		t.Errorf("pg-exporter's password %q differs from the BITVILLE_PG_PASSWORD %q the database is initialised with", exporterPassword, want)
	}
	sqlDir, _ := envValue(pg, "SHOP_SQL_DIR")
	if loc := locate(pg, sqlDir); loc.Where != filepath.Join(root, "php", "examples", "sql") {
		t.Errorf("postgres: SHOP_SQL_DIR=%s is %s; want the repository's php/examples/sql mounted there", sqlDir, loc.Where)
	}
}

// sameVolume checks that containerPath is in one named volume, at the same
// place, in each of the services.
func sameVolume(t *testing.T, what, containerPath string, services map[string]types.ServiceConfig) {
	t.Helper()
	var first location
	var firstName string
	for _, name := range slices.Sorted(maps.Keys(services)) {
		loc := locate(services[name], path.Dir(containerPath))
		if loc.Kind != types.VolumeTypeVolume {
			t.Errorf("%s (%s): service %s has no named volume at %s", what, containerPath, name, path.Dir(containerPath))
			continue
		}
		if firstName == "" {
			first, firstName = loc, name
		} else if loc.Where != first.Where {
			t.Errorf("%s (%s): service %s has volume path %s there, service %s has %s", what, containerPath, firstName, first.Where, name, loc.Where)
		}
	}
}

// --- Prometheus -------------------------------------------------------------

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

// --- Grafana and Loki -------------------------------------------------------

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

// --- The real programs on the compose files ---------------------------------

// TestPostgresInit runs postgres/initdb/10-shop.sh against a throwaway
// PostgreSQL started like the postgres service (its -c settings), with
// the service's environment, then checks the result as the shop and the
// pg-exporter will see it, with password authentication.
func TestPostgresInit(t *testing.T) {
	if _, err := exec.LookPath("initdb"); err != nil {
		if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) == 0 {
			t.Skip("PostgreSQL server binaries are not installed (Debian: postgresql, or scripts/deps.sh)")
		}
	}
	p := loadProject(t)
	pgSvc := service(t, p, "postgres")
	settings := map[string]string{}
	var preload []string
	for i := 0; i+1 < len(pgSvc.Command); i++ {
		if pgSvc.Command[i] == "-c" {
			k, v, _ := strings.Cut(pgSvc.Command[i+1], "=")
			if k == "shared_preload_libraries" {
				preload = strings.Split(v, ",")
			} else {
				settings[k] = v
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pg, err := stack.StartPostgres(ctx, stack.PostgresConfig{Dir: t.TempDir(), Preload: preload, Settings: settings})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })

	initdb := locate(pgSvc, "/docker-entrypoint-initdb.d")
	scripts, _ := filepath.Glob(filepath.Join(initdb.Where, "*.sh"))
	sqlDir, _ := envValue(pgSvc, "SHOP_SQL_DIR")
	env := []string{
		"PATH=" + pg.BinDir + ":/usr/bin:/bin",
		"LC_ALL=C",
		"PGHOST=" + pg.Host,
		"PGPORT=" + strconv.Itoa(pg.Port),
		"POSTGRES_USER=" + pg.User,
		"SHOP_SQL_DIR=" + locate(pgSvc, sqlDir).Where,
	}
	for _, k := range []string{"POSTGRES_PASSWORD", "SHOP_DB_PASSWORD", "BITVILLE_PG_PASSWORD"} {
		v, _ := envValue(pgSvc, k)
		env = append(env, k+"="+v)
	}
	for _, s := range scripts {
		cmd := exec.CommandContext(ctx, "bash", s)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", rel(repoRoot(t), s), err, out)
		}
	}

	// From here on, passwords count for TCP connections of everyone but
	// the superuser (the postgres image's own setup).
	hba := filepath.Join(pg.DataDir, "pg_hba.conf")
	if err := os.WriteFile(hba, []byte("local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Exec(ctx, "postgres", "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	got, err := pg.Exec(ctx, "shop", `SELECT
		(SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'),
		pg_has_role('bitville', 'pg_monitor', 'member'),
		(SELECT rolcanlogin FROM pg_roles WHERE rolname = 'bitville'),
		(SELECT tableowner FROM pg_tables WHERE tablename = 'orders')`)
	if err != nil {
		t.Fatal(err)
	}
	if got != "1|t|t|shop" {
		t.Errorf("after the init scripts: pg_stat_statements in shop, bitville in pg_monitor, bitville can log in, orders owned by shop: got %q; want 1|t|t|shop", got)
	}

	// The shop, as the pool connects (APP_DB_USER, APP_DB_PASSWORD).
	shop := service(t, p, "shop")
	user, _ := envValue(shop, "APP_DB_USER")
	password, _ := envValue(shop, "APP_DB_PASSWORD")
	psql := exec.CommandContext(ctx, filepath.Join(pg.BinDir, "psql"), "--no-psqlrc", "-Atc", "SELECT count(*) FROM orders",
		fmt.Sprintf("host=%s port=%d dbname=shop user=%s", pg.Host, pg.Port, user))
	psql.Env = []string{"PGPASSWORD=" + password, "PGCONNECT_TIMEOUT=5", "LC_ALL=C"}
	if out, err := psql.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "1000" {
		t.Errorf("the shop's user %s with its password: SELECT count(*) FROM orders: %v: %s (want 1000)", user, err, out)
	}

	// The pg-exporter with the service's DSN (host and port of this
	// server) and environment: every collector must succeed.
	exporter := service(t, p, "pg-exporter")
	dsn, err := url.Parse(flagValue(exporter.Command, "pg.dsn"))
	if err != nil {
		t.Fatal(err)
	}
	dsn.Host = fmt.Sprintf("%s:%d", pg.Host, pg.Port)
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bitvilleBinary(t), "pg-exporter", "--pg.dsn="+dsn.String(), fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port))
	pgpass, _ := envValue(exporter, "PGPASSWORD")
	cmd.Env = []string{"PGPASSWORD=" + pgpass}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	metrics := ""
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if metrics = string(b); strings.Contains(metrics, "bitville_pg_up") {
			break
		}
	}
	var problems []string
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "bitville_pg_up{") && !strings.HasSuffix(line, " 1") ||
			strings.HasPrefix(line, "bitville_pg_scrape_collector_success{") && !strings.HasSuffix(line, " 1") ||
			strings.HasPrefix(line, "bitville_pg_statements_hidden_entries{") && !strings.HasSuffix(line, " 0") {
			problems = append(problems, line)
		}
	}
	if !strings.Contains(metrics, "bitville_pg_up") || len(problems) > 0 {
		t.Errorf("pg-exporter as bitville on the initialised database: %v\nlog:\n%s", problems, logs.String())
	}
}

// TestFPMConfig runs php-fpm -t on the pool files (the paths php-fpm
// opens moved to a temporary directory).
func TestFPMConfig(t *testing.T) {
	fpm := ""
	for _, name := range []string{"php-fpm8.2", "php-fpm"} {
		if p, err := exec.LookPath(name); err == nil {
			fpm = p
			break
		}
		if _, err := os.Stat("/usr/sbin/" + name); err == nil {
			fpm = "/usr/sbin/" + name
			break
		}
	}
	if fpm == "" {
		t.Skip("php-fpm is not installed (Debian: php8.2-fpm, or scripts/deps.sh)")
	}
	tmp := t.TempDir()
	pool := filepath.Join(tmp, "php-fpm.d")
	if err := os.Mkdir(pool, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(composeDir(t), "shop", "php-fpm.d")
	files, _ := filepath.Glob(filepath.Join(src, "*.conf"))
	if len(files) == 0 {
		t.Fatalf("no *.conf in %s", src)
	}
	moved := regexp.MustCompile(`(?m)^(listen|slowlog|error_log)\s*=\s*(\S+)\s*$`)
	for _, f := range files {
		conf := moved.ReplaceAllStringFunc(string(readFile(t, f)), func(line string) string {
			m := moved.FindStringSubmatch(line)
			return m[1] + " = " + filepath.Join(tmp, m[1])
		})
		if err := os.WriteFile(filepath.Join(pool, filepath.Base(f)), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	main := filepath.Join(tmp, "php-fpm.conf")
	if err := os.WriteFile(main, fmt.Appendf(nil, "[global]\npid = %s/fpm.pid\ninclude = %s/*.conf\n", tmp, pool), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(fpm, "-t", "-y", main).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("test is successful")) {
		t.Errorf("php-fpm -t on compose/shop/php-fpm.d: %v\n%s", err, out)
	}
}

// TestNginxConfig runs nginx -t on nginx/shop.conf inside a minimal main
// configuration (the image's nginx.conf includes conf.d/*.conf in http).
func TestNginxConfig(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			t.Skip("nginx is not installed (Debian: nginx, or scripts/deps.sh)")
		}
		nginx = "/usr/sbin/nginx"
	}
	site := filepath.Join(composeDir(t), "nginx", "shop.conf")
	for _, m := range regexp.MustCompile(`(?m)^\s*include\s+([^;\s]+);`).FindAllStringSubmatch(string(readFile(t, site)), -1) {
		if _, err := os.Stat(m[1]); err != nil {
			t.Skipf("nginx/shop.conf includes %s, which this machine's nginx lacks", m[1])
		}
	}
	tmp := t.TempDir()
	main := filepath.Join(tmp, "nginx.conf")
	conf := fmt.Sprintf(`pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[2]s;
}
`, tmp, site)
	if err := os.WriteFile(main, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(nginx, "-t", "-p", tmp, "-e", filepath.Join(tmp, "error.log"), "-c", main).CombinedOutput()
	if err != nil {
		t.Errorf("nginx -t on compose/nginx/shop.conf: %v\n%s", err, out)
	}
}

// --- Helpers ----------------------------------------------------------------

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

// --- Dockerfiles ------------------------------------------------------------

type dockerStep struct {
	Line        int
	Instruction string   // upper case
	Args        string   // the rest of the line, continuation lines joined
	From        string   // COPY/ADD --from=
	Sources     []string // COPY/ADD sources
}

func dockerfilePath(b *types.BuildConfig) string {
	df := b.Dockerfile
	if df == "" {
		df = "Dockerfile"
	}
	if !filepath.IsAbs(df) {
		df = filepath.Join(b.Context, df)
	}
	return df
}

// parseDockerfile reads the instructions of a Dockerfile (comments and
// line continuations handled; heredocs are not used here).
func parseDockerfile(p string) ([]dockerStep, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("Dockerfile: %v", err)
	}
	var steps []dockerStep
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		instr, args, _ := strings.Cut(cur.String(), " ")
		step := dockerStep{Line: start, Instruction: strings.ToUpper(instr), Args: strings.TrimSpace(args)}
		if step.Instruction == "COPY" || step.Instruction == "ADD" {
			fields := strings.Fields(step.Args)
			for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
				if v, ok := strings.CutPrefix(fields[0], "--from="); ok {
					step.From = v
				}
				fields = fields[1:]
			}
			if len(fields) > 0 && strings.HasPrefix(fields[0], "[") {
				var list []string
				if err := json.Unmarshal([]byte(strings.Join(fields, " ")), &list); err != nil {
					return nil, fmt.Errorf("%s line %d: %v", p, start, err)
				}
				fields = list
			}
			if len(fields) < 2 {
				return nil, fmt.Errorf("%s line %d: %s needs a source and a destination", p, start, step.Instruction)
			}
			step.Sources = fields[:len(fields)-1]
		}
		steps = append(steps, step)
		cur.Reset()
	}
	return steps, nil
}

// ignoreRules is a .dockerignore: patterns with * ? and **, ! to
// re-include; the last pattern matching a path or one of its parent
// directories decides.
type ignoreRules []struct {
	re     *regexp.Regexp
	negate bool
}

// dockerignore reads the ignore file BuildKit uses for Dockerfile df:
// <df>.dockerignore beside it, else .dockerignore at the context's root.
func dockerignore(df, ctxDir string) (ignoreRules, string) {
	for _, f := range []string{df + ".dockerignore", filepath.Join(ctxDir, ".dockerignore")} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var rules ignoreRules
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			neg := strings.HasPrefix(line, "!")
			pat := path.Clean(strings.TrimPrefix(strings.TrimPrefix(line, "!"), "/"))
			var re strings.Builder
			re.WriteString("^")
			for i := 0; i < len(pat); i++ {
				switch {
				case strings.HasPrefix(pat[i:], "**/"):
					re.WriteString("(.*/)?")
					i += 2
				case strings.HasPrefix(pat[i:], "**"):
					re.WriteString(".*")
					i++
				case pat[i] == '*':
					re.WriteString("[^/]*")
				case pat[i] == '?':
					re.WriteString("[^/]")
				default:
					re.WriteString(regexp.QuoteMeta(pat[i : i+1]))
				}
			}
			re.WriteString("$")
			rules = append(rules, struct {
				re     *regexp.Regexp
				negate bool
			}{regexp.MustCompile(re.String()), neg})
		}
		return rules, f
	}
	return nil, ""
}

func (r ignoreRules) excludes(p string) bool {
	excluded := false
	for _, rule := range r {
		for q := p; q != "." && q != "/" && q != ""; q = path.Dir(q) {
			if rule.re.MatchString(q) {
				excluded = !rule.negate
				break
			}
		}
	}
	return excluded
}
