package compose

import (
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

const composeFile = "docker-compose.yml"

// The services of the stack and the ports each publishes (host = container).
var (
	wantServices = []string{"agent", "grafana", "loki", "nginx", "node-exporter", "pg-exporter", "postgres", "prometheus", "pushgw", "shop"}
	wantPorts    = map[string][]string{
		"grafana":     {"3000"},
		"prometheus":  {"9090"},
		"nginx":       {"8080"},
		"agent":       {"19100"},
		"pg-exporter": {"19101"},
		"pushgw":      {"19102"},
	}
	// Host paths (outside the repository) a service may bind-mount.
	hostMounts = map[string][]string{"node-exporter": {"/proc", "/sys"}}
)

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
