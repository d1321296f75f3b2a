package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is a peer's main process, started in its own process group.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit status; valid once done is closed
}

// startProcess starts cmd in a new process group with stdout and stderr
// appended to logPath.
func startProcess(name string, cmd *exec.Cmd, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot open the %s log: %w", name, err)
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %s (%s): %w", name, cmd.Path, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the main process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the main process, waits up to grace for it to exit,
// then kills what is left of its process group. It returns an error only
// when the process could not be ended.
func (p *process) stop(sig syscall.Signal, grace time.Duration) error {
	pgid := p.cmd.Process.Pid
	if !p.exited() {
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.done:
		case <-time.After(grace):
		}
	}
	// Workers may outlive their master for a moment; end the whole group.
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("cannot kill the %s process group %d: %w", p.name, pgid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit within 10s of SIGKILL", p.name, pgid)
	}
}

// waitReady polls ready every 20 ms until it returns nil, the process
// exits, or ctx ends. The error quotes the tail of logPath.
func (p *process) waitReady(ctx context.Context, logPath string, ready func() error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = ready(); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited while starting (%v)%s", p.name, p.err, logTail(logPath))
		case <-ctx.Done():
			return fmt.Errorf("%s did not become ready: %w (last check: %v)%s", p.name, ctx.Err(), last, logTail(logPath))
		case <-tick.C:
		}
	}
}

// logTail returns the last lines of a log file, formatted to follow an
// error message, or "" when the file is empty or unreadable.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	const max = 4096
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return fmt.Sprintf("; %s says:\n%s", path, strings.TrimRight(string(b), "\n"))
}

// dialUnix checks that a unix stream socket accepts connections.
func dialUnix(path string) error {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// countChildren returns how many processes have pid as their parent,
// read from the fourth field of /proc/N/stat.
func countChildren(pid int) int {
	dirs, _ := os.ReadDir("/proc")
	want := strconv.Itoa(pid)
	n := 0
	for _, d := range dirs {
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name in parentheses may hold spaces; the fields
		// after its closing parenthesis are state, then ppid.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		if f := strings.Fields(string(b[i+1:])); len(f) > 1 && f[1] == want {
			n++
		}
	}
	return n
}

// dialTCP checks that a TCP address accepts connections.
func dialTCP(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Another process may take it before the caller binds it; the Start
// functions that pick a port themselves retry when that happens.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("cannot find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// onFreePort calls start with port or, when port is 0, with a port that
// was free a moment ago; when another process took that port meanwhile
// (start's error contains inUse), it tries again with another, three
// times in all. A failure to find a free port is returned prefixed with
// "cannot start name: " (unprefixed when name is ""); start's own errors
// are returned as they are.
func onFreePort(port int, name, inUse string, start func(port int) error) error {
	for attempt := 1; ; attempt++ {
		p := port
		if p == 0 {
			var err error
			if p, err = FreePort(); err != nil {
				if name != "" {
					err = fmt.Errorf("cannot start %s: %w", name, err)
				}
				return err
			}
		}
		err := start(p)
		if err == nil || port != 0 || attempt == 3 || !strings.Contains(err.Error(), inUse) {
			return err
		}
	}
}

// findBinary returns the first of names found on PATH or in dirs.
func findBinary(pkg string, dirs []string, names ...string) (string, error) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
		for _, d := range dirs {
			p := d + "/" + n
			if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("cannot find %s on PATH or in %s (Debian package %s)", strings.Join(names, " or "), strings.Join(dirs, ", "), pkg)
}

// maxUnixPath is the longest path a unix socket address can hold on Linux
// (sun_path is 108 bytes including the terminating NUL).
const maxUnixPath = 107

func checkSocketPath(path string) error {
	if len(path) > maxUnixPath {
		return fmt.Errorf("socket path %s is %d bytes; unix sockets allow at most %d: use a shorter directory", path, len(path), maxUnixPath)
	}
	return nil
}
