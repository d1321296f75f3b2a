package demo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
)

// hogName is the name the process scenario's processes run under: the
// kernel names a process (comm) after the file it executed, here a
// symlink to sha256sum, which reads /dev/zero as fast as a core allows.
const hogName = "bvbackup"

// hogs are the running processes of the process scenario, so Stop can
// end them whatever the spike is doing.
type hogs struct {
	mu    sync.Mutex
	procs map[*exec.Cmd]struct{}
}

// start starts n processes named hogName, each in its own process group,
// which end with ctx (or killAll); wg waits for them.
func (h *hogs) start(ctx context.Context, wg *sync.WaitGroup, dir string, n int) error {
	target, err := exec.LookPath("sha256sum")
	if err != nil {
		return fmt.Errorf("cannot start the %s processes: %w", hogName, err)
	}
	link := filepath.Join(dir, hogName)
	if err := os.Symlink(target, link); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("cannot start the %s processes: %w", hogName, err)
	}
	for range n {
		cmd := exec.CommandContext(ctx, link, "/dev/zero")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Cancel = func() error { return killGroup(cmd) }
		h.mu.Lock()
		if err := cmd.Start(); err != nil {
			h.mu.Unlock()
			return fmt.Errorf("cannot start a %s process: %w", hogName, err)
		}
		if h.procs == nil {
			h.procs = make(map[*exec.Cmd]struct{})
		}
		h.procs[cmd] = struct{}{}
		h.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = cmd.Wait()
			h.mu.Lock()
			delete(h.procs, cmd)
			h.mu.Unlock()
		}()
	}
	return nil
}

// killAll kills the running processes.
func (h *hogs) killAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for cmd := range h.procs {
		_ = killGroup(cmd)
	}
}

// killGroup kills cmd's process group.
func killGroup(cmd *exec.Cmd) error {
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
