package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ShopConfig describes the example application of php/examples running on
// the real stack: PostgreSQL with the shop's schema and seed, a php-fpm
// pool serving it, and nginx in front.
type ShopConfig struct {
	Dir      string // each peer gets a subdirectory (created)
	RepoRoot string // the repository checkout; "" = found from the working directory
	// Agent loads php/bootstrap.php with auto_prepend_file, configured by
	// AgentEnv (BITVILLE_APM_* variables) in the pool and in RunCLI.
	Agent            bool
	AgentEnv         map[string]string
	Env              map[string]string // more pool environment (APP_* settings)
	INI              map[string]string // php_admin_value[...] of the pool, e.g. session.save_path
	Children         int               // default 4
	SlowlogTimeout   time.Duration     // 0 = no slowlog
	TerminateTimeout time.Duration     // 0 = no limit
	Preload          []string          // PostgreSQL shared_preload_libraries; default pg_stat_statements
	PHP              string            // php CLI for RunCLI; default php8.2 or php on PATH
}

// Shop is the running example application.
type Shop struct {
	URL         string // nginx's base URL
	DB          string // database name: shop
	ExamplesDir string // php/examples
	Bootstrap   string // php/bootstrap.php ("" without the agent)
	PG          *Postgres
	FPM         *FPM
	Nginx       *Nginx

	env    map[string]string // the pool's environment, also given to RunCLI
	phpBin string
	cliLog string
}

// StartShop starts PostgreSQL, loads php/examples/sql/schema.sql and
// seed.sql into database "shop", then starts php-fpm and nginx serving
// php/examples/public. ctx bounds the start. On error everything started
// so far is stopped.
func StartShop(ctx context.Context, c ShopConfig) (s *Shop, err error) {
	if c.Dir == "" {
		return nil, fmt.Errorf("cannot start the example shop: ShopConfig.Dir is empty")
	}
	root := c.RepoRoot
	if root == "" {
		if root, err = RepoRoot(); err != nil {
			return nil, fmt.Errorf("cannot start the example shop: %w", err)
		}
	}
	s = &Shop{DB: "shop", ExamplesDir: filepath.Join(root, "php", "examples"), cliLog: filepath.Join(c.Dir, "php-cli-error.log")}
	if c.Agent {
		s.Bootstrap = filepath.Join(root, "php", "bootstrap.php")
		if _, err := os.Stat(s.Bootstrap); err != nil {
			return nil, fmt.Errorf("cannot start the example shop with the agent: %w", err)
		}
	}
	if s.phpBin = c.PHP; s.phpBin == "" {
		if s.phpBin, err = findBinary("php8.2-cli", []string{"/usr/bin"}, "php8.2", "php"); err != nil {
			return nil, fmt.Errorf("cannot start the example shop: %w", err)
		}
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Stop())
			s = nil
		}
	}()
	preload := c.Preload
	if preload == nil {
		preload = []string{"pg_stat_statements"}
	}
	if s.PG, err = StartPostgres(ctx, PostgresConfig{Dir: filepath.Join(c.Dir, "postgres"), Preload: preload}); err != nil {
		return s, err
	}
	if err = s.PG.CreateDB(ctx, s.DB); err != nil {
		return s, err
	}
	for _, f := range []string{"schema.sql", "seed.sql"} {
		if err = s.PG.ExecFile(ctx, s.DB, filepath.Join(s.ExamplesDir, "sql", f)); err != nil {
			return s, fmt.Errorf("cannot load the example shop's database: %w", err)
		}
	}
	s.env = map[string]string{"APP_DB_DSN": s.PG.PDODSN(s.DB), "APP_DB_USER": s.PG.User}
	for k, v := range c.Env {
		s.env[k] = v
	}
	if c.Agent {
		for k, v := range c.AgentEnv {
			s.env[k] = v
		}
	}
	if s.FPM, err = StartFPM(ctx, FPMConfig{
		Dir:              filepath.Join(c.Dir, "fpm"),
		Children:         c.Children,
		PrependFile:      s.Bootstrap,
		Env:              s.env,
		INI:              c.INI,
		SlowlogTimeout:   c.SlowlogTimeout,
		TerminateTimeout: c.TerminateTimeout,
	}); err != nil {
		return s, err
	}
	if s.Nginx, err = StartNginx(ctx, NginxConfig{
		Dir:           filepath.Join(c.Dir, "nginx"),
		Root:          filepath.Join(s.ExamplesDir, "public"),
		FastCGISocket: s.FPM.Socket,
	}); err != nil {
		return s, err
	}
	s.URL = s.Nginx.URL
	return s, nil
}

// Stop stops nginx, php-fpm and PostgreSQL, in that order, and returns
// every error.
func (s *Shop) Stop() error {
	if s == nil {
		return nil
	}
	var errs []error
	if s.Nginx != nil {
		errs = append(errs, s.Nginx.Stop())
	}
	if s.FPM != nil {
		errs = append(errs, s.FPM.Stop())
	}
	if s.PG != nil {
		errs = append(errs, s.PG.Stop())
	}
	return errors.Join(errs...)
}

// CLIErrorLog is PHP's error_log for scripts run with RunCLI.
func (s *Shop) CLIErrorLog() string { return s.cliLog }

// RunCLI runs a PHP script of php/examples (script relative to that
// directory, e.g. "bin/reindex.php", which is also its argv[0]) with the
// pool's environment and, with the agent, the same auto_prepend_file. It
// returns stdout and an error carrying stderr when the script fails.
func (s *Shop) RunCLI(ctx context.Context, script string, args ...string) ([]byte, error) {
	all := []string{"-d", "log_errors=1", "-d", "display_errors=stderr", "-d", "error_log=" + s.cliLog}
	if s.Bootstrap != "" {
		all = append(all, "-d", "auto_prepend_file="+s.Bootstrap)
	}
	all = append(all, script)
	all = append(all, args...)
	cmd := exec.CommandContext(ctx, s.phpBin, all...)
	cmd.Dir = s.ExamplesDir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	for _, k := range sortedKeys(s.env) {
		cmd.Env = append(cmd.Env, k+"="+s.env[k])
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("php %s: %w: %s", script, err, strings.TrimSpace(stderr.String()))
	}
	if stderr.Len() > 0 {
		return stdout.Bytes(), fmt.Errorf("php %s wrote to stderr: %s", script, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// RepoRoot returns the checkout of this module: the nearest directory at
// or above the working directory whose go.mod declares it.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/bitville/bitville-apm")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no bitville-apm go.mod at or above the working directory")
		}
		dir = parent
	}
}
