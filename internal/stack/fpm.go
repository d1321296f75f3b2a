package stack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"
)

// FPMConfig describes one php-fpm master with one pool.
type FPMConfig struct {
	Dir              string            // working dir for config, logs, socket (created)
	Pool             string            // pool name, default "www"
	Children         int               // pm = static, default 4
	PrependFile      string            // auto_prepend_file; "" = none
	Env              map[string]string // env[...] of the pool (clear_env stays on: only these reach PHP)
	INI              map[string]string // php_admin_value[...]
	StatusPath       string            // pm.status_path, default "/status"
	SlowlogTimeout   time.Duration     // request_slowlog_timeout (0 = off); slowlog at Dir/slow.log
	TerminateTimeout time.Duration     // request_terminate_timeout (0 = off)
	Binary           string            // default: php-fpm8.2 found on PATH or /usr/sbin
	// Extensions php-fpm does not load although its ini scan directory
	// does (by name, e.g. "tideways_xhprof"): it reads a copy of that
	// directory without their files (PHP_INI_SCAN_DIR).
	WithoutExtensions []string
}

// FPMBinary is the php-fpm StartFPM runs unless FPMConfig.Binary says
// otherwise: php-fpm8.2 or php-fpm on PATH, in /usr/sbin or in
// /usr/local/sbin.
func FPMBinary() (string, error) {
	return findBinary("php8.2-fpm", []string{"/usr/sbin", "/usr/local/sbin"}, "php-fpm8.2", "php-fpm")
}

// FPM is a running php-fpm master and its workers.
type FPM struct {
	Socket      string // the pool's FastCGI unix socket
	SlowlogPath string // Dir/slow.log (written only when SlowlogTimeout > 0)
	ErrorLog    string // the master's log: worker starts, kills, timeouts, worker stderr
	PHPErrorLog string // PHP's error_log of the pool (php_admin_value[error_log])
	ConfigPath  string // the generated php-fpm.conf
	Pool        string
	Children    int
	StatusPath  string

	proc *process
}

// StartFPM writes a php-fpm configuration into c.Dir and starts php-fpm in
// the foreground. It returns once the pool's socket accepts connections;
// ctx bounds only that wait. Errors quote the tail of the fpm log.
//
// As root, the master runs with -R and the workers run as root too, so they
// can read files in private temporary directories and write to sockets
// created by other root processes; otherwise everything runs as the
// current user.
func StartFPM(ctx context.Context, c FPMConfig) (*FPM, error) {
	if c.Dir == "" {
		return nil, fmt.Errorf("cannot start php-fpm: FPMConfig.Dir is empty")
	}
	if c.Pool == "" {
		c.Pool = "www"
	}
	if c.Children <= 0 {
		c.Children = 4
	}
	if c.StatusPath == "" {
		c.StatusPath = "/status"
	}
	if c.Binary == "" {
		bin, err := FPMBinary()
		if err != nil {
			return nil, fmt.Errorf("cannot start php-fpm: %w", err)
		}
		c.Binary = bin
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("cannot start php-fpm: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot start php-fpm: %w", err)
	}
	f := &FPM{
		Socket:      filepath.Join(dir, "fpm.sock"),
		SlowlogPath: filepath.Join(dir, "slow.log"),
		ErrorLog:    filepath.Join(dir, "fpm.log"),
		PHPErrorLog: filepath.Join(dir, "php-error.log"),
		ConfigPath:  filepath.Join(dir, "php-fpm.conf"),
		Pool:        c.Pool,
		Children:    c.Children,
		StatusPath:  c.StatusPath,
	}
	if err := checkSocketPath(f.Socket); err != nil {
		return nil, fmt.Errorf("cannot start php-fpm: %w", err)
	}
	conf, err := fpmConfig(c, f)
	if err != nil {
		return nil, fmt.Errorf("cannot start php-fpm: %w", err)
	}
	if err := os.WriteFile(f.ConfigPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("cannot start php-fpm: %w", err)
	}
	// The PHP error log exists from the start, so "no new lines" can be
	// checked even when PHP never writes to it.
	if err := touch(f.PHPErrorLog); err != nil {
		return nil, fmt.Errorf("cannot start php-fpm: %w", err)
	}
	// php-fpm creates the slowlog at the first slow request; creating it
	// now lets a follower open it from the start.
	if c.SlowlogTimeout > 0 {
		if err := touch(f.SlowlogPath); err != nil {
			return nil, fmt.Errorf("cannot start php-fpm: %w", err)
		}
	}
	_ = os.Remove(f.Socket)
	args := []string{"--nodaemonize", "--fpm-config", f.ConfigPath, "--prefix", dir}
	if os.Geteuid() == 0 {
		args = append(args, "--allow-to-run-as-root")
	}
	cmd := exec.Command(c.Binary, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
	if len(c.WithoutExtensions) > 0 {
		// Asked of the real binary: Binary may be a wrapper (valgrind).
		realBinary, err := FPMBinary()
		if err != nil {
			return nil, fmt.Errorf("cannot start php-fpm without %s: %w", strings.Join(c.WithoutExtensions, ", "), err)
		}
		scan := filepath.Join(dir, "conf.d")
		if err := scanDirWithout(realBinary, scan, c.WithoutExtensions); err != nil {
			return nil, fmt.Errorf("cannot start php-fpm: %w", err)
		}
		cmd.Env = append(cmd.Env, "PHP_INI_SCAN_DIR="+scan)
	}
	// The master writes its own log (error_log below); its stdout/stderr
	// carry only start-up failures, which go to the same file.
	p, err := startProcess("php-fpm", cmd, f.ErrorLog)
	if err != nil {
		return nil, err
	}
	f.proc = p
	// The master listens before it forks the pool's children, so ready
	// means the socket accepts and every child of pm = static exists: a
	// status page read right after the start then lists them all.
	ready := func() error {
		if err := dialUnix(f.Socket); err != nil {
			return err
		}
		if n := countChildren(p.cmd.Process.Pid); n < c.Children {
			return fmt.Errorf("%d of %d workers forked", n, c.Children)
		}
		return nil
	}
	if err := p.waitReady(ctx, f.ErrorLog, ready); err != nil {
		_ = p.stop(syscall.SIGTERM, 5*time.Second)
		return nil, err
	}
	return f, nil
}

// Stop ends the master and its workers (SIGQUIT, a graceful stop that
// lets running requests finish for up to 5 seconds, then SIGKILL to the
// process group) and removes the socket.
func (f *FPM) Stop() error {
	if f == nil || f.proc == nil {
		return nil
	}
	err := f.proc.stop(syscall.SIGQUIT, 5*time.Second)
	_ = os.Remove(f.Socket)
	return err
}

// MasterPID returns the php-fpm master's process id.
func (f *FPM) MasterPID() int { return f.proc.cmd.Process.Pid }

// StatusURI returns the pool's status page in the form the agent's
// --fpm.status-uri flag takes: unix:///path/fpm.sock;/status.
func (f *FPM) StatusURI() string { return "unix://" + f.Socket + ";" + f.StatusPath }

var iniKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// fpmConfig renders php-fpm.conf for c with the paths of f.
func fpmConfig(c FPMConfig, f *FPM) (string, error) {
	if !iniKey.MatchString(c.Pool) {
		return "", fmt.Errorf("bad pool name %q: use letters, digits, _ and .", c.Pool)
	}
	var b strings.Builder
	line := func(key, value string) error {
		q, err := iniQuote(value)
		if err != nil {
			return fmt.Errorf("bad value for %s: %w", key, err)
		}
		fmt.Fprintf(&b, "%s = %s\n", key, q)
		return nil
	}
	b.WriteString("[global]\n")
	lines := [][2]string{
		{"pid", filepath.Join(filepath.Dir(f.ConfigPath), "fpm.pid")},
		{"error_log", f.ErrorLog},
		{"log_level", "notice"},
		{"daemonize", "no"},
	}
	for _, l := range lines {
		if err := line(l[0], l[1]); err != nil {
			return "", err
		}
	}
	fmt.Fprintf(&b, "\n[%s]\n", c.Pool)
	lines = nil
	if os.Geteuid() == 0 {
		lines = append(lines, [2]string{"user", "root"}, [2]string{"group", "root"})
	}
	lines = append(lines,
		[2]string{"listen", f.Socket},
		[2]string{"listen.mode", "0666"},
		[2]string{"pm", "static"},
		[2]string{"pm.max_children", fmt.Sprint(c.Children)},
		[2]string{"pm.status_path", c.StatusPath},
		[2]string{"ping.path", "/ping"},
		[2]string{"catch_workers_output", "yes"},
		[2]string{"decorate_workers_output", "no"},
		[2]string{"php_admin_value[error_log]", f.PHPErrorLog},
		[2]string{"php_admin_flag[log_errors]", "on"},
		[2]string{"php_admin_flag[display_errors]", "off"},
	)
	if c.SlowlogTimeout > 0 {
		lines = append(lines,
			[2]string{"slowlog", f.SlowlogPath},
			[2]string{"request_slowlog_timeout", fpmDuration(c.SlowlogTimeout)},
		)
	}
	if c.TerminateTimeout > 0 {
		lines = append(lines, [2]string{"request_terminate_timeout", fpmDuration(c.TerminateTimeout)})
	}
	if c.PrependFile != "" {
		abs, err := filepath.Abs(c.PrependFile)
		if err != nil {
			return "", err
		}
		lines = append(lines, [2]string{"php_admin_value[auto_prepend_file]", abs})
	}
	for _, k := range sortedKeys(c.INI) {
		if !iniKey.MatchString(k) {
			return "", fmt.Errorf("bad INI name %q", k)
		}
		lines = append(lines, [2]string{"php_admin_value[" + k + "]", c.INI[k]})
	}
	for _, k := range sortedKeys(c.Env) {
		if !iniKey.MatchString(k) {
			return "", fmt.Errorf("bad environment variable name %q", k)
		}
		lines = append(lines, [2]string{"env[" + k + "]", c.Env[k]})
	}
	for _, l := range lines {
		if err := line(l[0], l[1]); err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

// fpmDuration renders d in php-fpm's units, rounding up to what they can
// express (php-fpm takes s, m, h, d; "ms" exists for the terminate timeout
// since PHP 8.3 only).
func fpmDuration(d time.Duration) string {
	s := (d + time.Second - 1) / time.Second
	return fmt.Sprintf("%ds", s)
}

// iniQuote quotes a value for php-fpm's INI parser (the normal scanner):
// inside double quotes, backslash escapes \, " and $ (which would
// otherwise start a ${...} substitution). Line breaks and NULs cannot be
// expressed.
func iniQuote(v string) (string, error) {
	if strings.ContainsAny(v, "\n\r\x00") {
		return "", fmt.Errorf("%q contains a line break or NUL", v)
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`)
	return `"` + r.Replace(v) + `"`, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func touch(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o666)
	if err != nil {
		return err
	}
	return f.Close()
}
