package stack

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PostgresConfig describes a throwaway PostgreSQL cluster.
type PostgresConfig struct {
	Dir      string            // logs (postgres.log, initdb.log) go here (created)
	Version  string            // major version under /usr/lib/postgresql; "" = the newest installed
	Preload  []string          // shared_preload_libraries, e.g. pg_stat_statements
	Settings map[string]string // extra server settings (-c name=value)
	Port     int               // TCP port on 127.0.0.1; 0 picks a free one
	// StandbyOf makes the cluster a streaming-replication standby of a
	// running one (pg_basebackup -R) instead of a new one (initdb). Its
	// version is the primary's.
	StandbyOf *Postgres
}

// Postgres is a running PostgreSQL cluster with trust authentication for
// the superuser "postgres", listening on 127.0.0.1:Port and on a unix
// socket in SocketDir.
type Postgres struct {
	Host      string // 127.0.0.1
	Port      int
	SocketDir string
	DataDir   string
	Log       string // the server's log
	User      string // the database superuser: postgres
	BinDir    string

	proc    *process
	ownDir  string // the data and socket directory created here, removed by Stop
	psql    string
	version string
}

// StartPostgres creates a cluster with initdb and starts postgres on it.
// It returns once the server accepts queries; ctx bounds initdb and that
// wait, not the server's life.
//
// PostgreSQL refuses to run as root, so as root the server runs as the
// OS user "postgres". Its data and socket directory then cannot live in
// Dir (test directories are private to root): it is a fresh directory
// under os.TempDir(), owned by that user and removed by Stop. The server's
// log is still written to Dir.
func StartPostgres(ctx context.Context, c PostgresConfig) (*Postgres, error) {
	if c.Dir == "" {
		return nil, fmt.Errorf("cannot start PostgreSQL: PostgresConfig.Dir is empty")
	}
	if c.StandbyOf != nil {
		c.Version = c.StandbyOf.version
	}
	binDir, version, err := postgresBinDir(c.Version)
	if err != nil {
		return nil, fmt.Errorf("cannot start PostgreSQL: %w", err)
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("cannot start PostgreSQL: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot start PostgreSQL: %w", err)
	}
	as, err := postgresUser()
	if err != nil {
		return nil, fmt.Errorf("cannot start PostgreSQL: %w", err)
	}
	own, err := os.MkdirTemp("", "bitville-apm-pg-")
	if err != nil {
		return nil, fmt.Errorf("cannot start PostgreSQL: %w", err)
	}
	p := &Postgres{
		Host:      "127.0.0.1",
		SocketDir: own,
		DataDir:   filepath.Join(own, "data"),
		Log:       filepath.Join(dir, "postgres.log"),
		User:      "postgres",
		BinDir:    binDir,
		ownDir:    own,
		version:   version,
	}
	fail := func(err error) (*Postgres, error) {
		_ = os.RemoveAll(own)
		return nil, fmt.Errorf("cannot start PostgreSQL %s: %w", version, err)
	}
	cred := as.cred
	if cred != nil {
		if err := os.Chown(own, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(err)
		}
	}
	if p.psql, err = findBinary("postgresql-client", []string{binDir, "/usr/bin"}, "psql"); err != nil {
		return fail(err)
	}
	if c.StandbyOf != nil {
		// A copy of the primary that streams from it (-R writes
		// standby.signal and primary_conninfo); the primary's initdb
		// allows replication connections with trust.
		pr := c.StandbyOf
		backupLog := filepath.Join(dir, "pg_basebackup.log")
		bb := exec.CommandContext(ctx, filepath.Join(binDir, "pg_basebackup"),
			"--pgdata", p.DataDir, "--host", pr.SocketDir, "--port", strconv.Itoa(pr.Port), "--username", pr.User,
			"--write-recovery-conf", "--wal-method", "stream", "--checkpoint", "fast", "--no-sync")
		bb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
		bb.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
		out, err := bb.CombinedOutput()
		_ = os.WriteFile(backupLog, out, 0o644)
		if err != nil {
			return fail(fmt.Errorf("pg_basebackup: %w%s", err, logTail(backupLog)))
		}
	} else {
		initLog := filepath.Join(dir, "initdb.log")
		initdb := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
			"--pgdata", p.DataDir, "--username", p.User, "--auth", "trust",
			"--encoding", "UTF8", "--locale", "C", "--no-sync")
		initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
		initdb.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
		out, err := initdb.CombinedOutput()
		_ = os.WriteFile(initLog, out, 0o644)
		if err != nil {
			return fail(fmt.Errorf("initdb: %w%s", err, logTail(initLog)))
		}
	}

	if err := onFreePort(c.Port, "", "already in use", func(port int) error { return p.start(ctx, c, port, cred) }); err != nil {
		return fail(err)
	}
	return p, nil
}

func (p *Postgres) start(ctx context.Context, c PostgresConfig, port int, cred *syscall.Credential) error {
	settings := map[string]string{
		"listen_addresses":        p.Host,
		"port":                    strconv.Itoa(port),
		"unix_socket_directories": p.SocketDir,
		"fsync":                   "off", // throwaway data: durability costs time and buys nothing
		"synchronous_commit":      "off",
		"full_page_writes":        "off",
		"max_connections":         "50",
		"logging_collector":       "off",
	}
	if len(c.Preload) > 0 {
		settings["shared_preload_libraries"] = strings.Join(c.Preload, ",")
	}
	for k, v := range c.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"-D", p.DataDir}
	for _, k := range keys {
		args = append(args, "-c", k+"="+settings[k])
	}
	cmd := exec.Command(filepath.Join(p.BinDir, "postgres"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	cmd.Dir = p.SocketDir
	mark := fileSize(p.Log)
	proc, err := startProcess("postgres", cmd, p.Log)
	if err != nil {
		return err
	}
	p.proc, p.Port = proc, port
	err = proc.waitReady(ctx, p.Log, func() error {
		_, err := p.Exec(ctx, "postgres", "SELECT 1")
		return err
	})
	if err != nil {
		_ = proc.stop(syscall.SIGQUIT, 5*time.Second)
		if b, _ := os.ReadFile(p.Log); int64(len(b)) > mark && bytes.Contains(b[mark:], []byte("already in use")) {
			return fmt.Errorf("port %d already in use: %w", port, err)
		}
		return err
	}
	return nil
}

// Stop ends the server with a fast shutdown (SIGINT: what pg_ctl stop -m
// fast sends), waits up to 10 seconds, then kills its process group, and
// removes the data directory.
func (p *Postgres) Stop() error {
	if p == nil || p.proc == nil {
		return nil
	}
	err := p.proc.stop(syscall.SIGINT, 10*time.Second)
	if rmErr := os.RemoveAll(p.ownDir); rmErr != nil && err == nil {
		err = fmt.Errorf("cannot remove the PostgreSQL data directory: %w", rmErr)
	}
	return err
}

// Version returns the server's major version, e.g. "15".
func (p *Postgres) Version() string { return p.version }

// PID returns the postmaster's process id.
func (p *Postgres) PID() int { return p.proc.cmd.Process.Pid }

// DSN returns a libpq URL for database db over TCP, as the superuser.
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", p.User, p.Host, p.Port, db)
}

// PDODSN returns a DSN for PHP's PDO (pdo_pgsql) for database db over TCP;
// the user is given separately (p.User, no password: trust).
func (p *Postgres) PDODSN(db string) string {
	return fmt.Sprintf("pgsql:host=%s;port=%d;dbname=%s", p.Host, p.Port, db)
}

// Exec runs SQL (one or more statements) in database db with psql and
// returns its unaligned, tuples-only output. The first failing statement
// stops it; the error carries psql's message.
func (p *Postgres) Exec(ctx context.Context, db, sql string) (string, error) {
	cmd := exec.CommandContext(ctx, p.psql, "--no-psqlrc", "--quiet", "--no-align", "--tuples-only",
		"--set", "ON_ERROR_STOP=1", "--host", p.Host, "--port", strconv.Itoa(p.Port),
		"--username", p.User, "--dbname", db, "--file", "-")
	cmd.Stdin = strings.NewReader(sql)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PGCONNECT_TIMEOUT=5", "LC_ALL=C"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("psql on database %s: %w: %s", db, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimRight(stdout.String(), "\n"), nil
}

// ExecFile runs the SQL file at path in database db (see Exec).
func (p *Postgres) ExecFile(ctx context.Context, db, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot run SQL file: %w", err)
	}
	if _, err := p.Exec(ctx, db, string(b)); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// CreateDB creates database name.
func (p *Postgres) CreateDB(ctx context.Context, name string) error {
	if _, err := p.Exec(ctx, "postgres", "CREATE DATABASE "+quoteIdent(name)); err != nil {
		return fmt.Errorf("cannot create database %s: %w", name, err)
	}
	return nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// postgresBinDir finds the server binaries of version (or the newest).
func postgresBinDir(version string) (dir, v string, err error) {
	const base = "/usr/lib/postgresql"
	if version == "" {
		entries, _ := os.ReadDir(base)
		best := 0
		for _, e := range entries {
			if n, err := strconv.Atoi(e.Name()); err == nil && n > best {
				if _, err := os.Stat(filepath.Join(base, e.Name(), "bin", "postgres")); err == nil {
					best = n
				}
			}
		}
		if best == 0 {
			return "", "", fmt.Errorf("no PostgreSQL server under %s (Debian package postgresql)", base)
		}
		version = strconv.Itoa(best)
	}
	dir = filepath.Join(base, version, "bin")
	if _, err := os.Stat(filepath.Join(dir, "postgres")); err != nil {
		return "", "", fmt.Errorf("no PostgreSQL %s server in %s (Debian package postgresql-%s)", version, dir, version)
	}
	return dir, version, nil
}

// runAs is the OS user PostgreSQL's programs run as; a nil cred keeps
// the current user.
type runAs struct{ cred *syscall.Credential }

// postgresUser returns the OS user "postgres" when running as root (the
// server refuses to run as root), else the current user.
func postgresUser() (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return runAs{}, fmt.Errorf("running as root needs the OS user postgres to run the server (Debian package postgresql creates it): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return runAs{}, fmt.Errorf("bad uid of user postgres: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return runAs{}, fmt.Errorf("bad gid of user postgres: %w", err)
	}
	return runAs{&syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}}, nil
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
