package host

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"unicode/utf8"
)

// clockTicks is USER_HZ, the unit of the times in /proc/<pid>/stat:
// sysconf(_SC_CLK_TCK), which is 100 on Linux for every architecture the
// project builds for (the kernel fixes it for user space whatever its
// internal HZ).
const clockTicks = 100

// pfKthread is PF_KTHREAD in the flags field of /proc/<pid>/stat (the
// kernel's include/linux/sched.h): the task is a kernel thread.
const pfKthread = 0x00200000

// statFields is how many fields of /proc/<pid>/stat parseStat needs: up
// to starttime, field 22.
const statFields = 22

// procStat is what the collector takes from one /proc/<pid>/stat line
// (proc(5)). Times are in clock ticks.
type procStat struct {
	PID        int
	Comm       []byte // field 2, without its parentheses; aliases the input
	State      byte   // field 3: R running, D uninterruptible, S, I, Z...
	PPID       int    // field 4
	Flags      uint64 // field 9
	UTime      uint64 // field 14
	STime      uint64 // field 15
	CUTime     uint64 // field 16: waited-for children, user
	CSTime     uint64 // field 17: waited-for children, system
	NumThreads int    // field 20
	StartTime  uint64 // field 22, ticks after boot
}

// CPU is the process's own user and system time, all its threads, live and
// exited.
func (s *procStat) CPU() uint64 { return s.UTime + s.STime }

// Children is the user and system time of the children it has waited for
// (which include their own waited-for children).
func (s *procStat) Children() uint64 { return s.CUTime + s.CSTime }

// Kernel reports a kernel thread.
func (s *procStat) Kernel() bool { return s.Flags&pfKthread != 0 }

// parseStat parses a /proc/<pid>/stat line without allocating. The command
// name (field 2) may hold spaces and parentheses: it runs from the first
// '(' to the last ')', and the numbered fields follow the last ')'.
func parseStat(b []byte) (procStat, error) {
	var s procStat
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 1 || closing < open {
		return s, fmt.Errorf("cannot parse stat line %q: no (comm)", clip(b))
	}
	pid, ok := parseUint(bytes.TrimSpace(b[:open]))
	if !ok || pid == 0 || pid > 1<<31 {
		return s, fmt.Errorf("cannot parse stat line %q: bad pid", clip(b))
	}
	s.PID = int(pid)
	s.Comm = b[open+1 : closing]
	rest := b[closing+1:]
	field := 2
	for field < statFields {
		for len(rest) > 0 && rest[0] == ' ' {
			rest = rest[1:]
		}
		if len(rest) == 0 || rest[0] == '\n' {
			break
		}
		end := bytes.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		f := rest[:end]
		if n := len(f); n > 0 && f[n-1] == '\n' {
			f = f[:n-1]
		}
		rest = rest[end:]
		field++
		if field == 3 {
			if len(f) != 1 {
				return s, fmt.Errorf("cannot parse stat line %q: bad state %q", clip(b), f)
			}
			s.State = f[0]
			continue
		}
		var dst *uint64
		var v uint64
		switch field {
		case 4, 20:
			// int fields
		case 9:
			dst = &s.Flags
		case 14:
			dst = &s.UTime
		case 15:
			dst = &s.STime
		case 16:
			dst = &s.CUTime
		case 17:
			dst = &s.CSTime
		case 22:
			dst = &s.StartTime
		default:
			continue
		}
		v, ok = parseUint(f)
		if !ok {
			return s, fmt.Errorf("cannot parse stat line %q: field %d %q is not a number", clip(b), field, f)
		}
		switch field {
		case 4:
			s.PPID = int(v)
		case 20:
			s.NumThreads = int(v)
		default:
			*dst = v
		}
	}
	if field < statFields {
		return s, fmt.Errorf("cannot parse stat line %q: %d fields; want at least %d", clip(b), field, statFields)
	}
	return s, nil
}

// processName is the name a process is counted under: its comm as valid
// UTF-8 (the kernel cuts comm at 15 bytes, possibly inside a character),
// and for a kernel thread the part before the first '/', which drops the
// per-CPU and per-queue suffix (kworker/0:1H-kblockd → kworker,
// ksoftirqd/1 → ksoftirqd).
func processName(comm []byte, kernel bool) string {
	if kernel {
		if i := bytes.IndexByte(comm, '/'); i > 0 {
			comm = comm[:i]
		}
	}
	if utf8.Valid(comm) {
		return string(comm)
	}
	return strings.ToValidUTF8(string(comm), "\uFFFD")
}

// Groups of processes, the label group.
const (
	GroupPHP      = "php"      // comm starting with "php": php-fpm8.2, php8.2, php
	GroupPostgres = "postgres" // the postmaster and its backends
	GroupKernel   = "kernel"   // kernel threads
	GroupOther    = "other"    // everything else, and the overflow
)

// processGroup is the group of a process by its name.
func processGroup(name string, kernel bool) string {
	switch {
	case kernel:
		return GroupKernel
	case strings.HasPrefix(name, "php"):
		return GroupPHP
	case name == "postgres" || name == "postmaster":
		return GroupPostgres
	}
	return GroupOther
}

// reader reads small /proc files into one reused buffer, with plain system
// calls: no *os.File, no finalizer, no allocation but the path.
type reader struct {
	buf []byte
}

// errGone is returned for a process (or file) that no longer exists.
var errGone = errors.New("gone")

// read returns the content of path, valid until the next call. A file
// that does not exist, or a process that exited meanwhile (ESRCH), gives
// errGone.
func (r *reader) read(path string) ([]byte, error) {
	fd, err := open(path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH) {
			return nil, errGone
		}
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	if r.buf == nil {
		r.buf = make([]byte, 4096)
	}
	n := 0
	for {
		if n == len(r.buf) {
			r.buf = append(r.buf, make([]byte, len(r.buf))...)
		}
		m, err := syscall.Read(fd, r.buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			if errors.Is(err, syscall.ESRCH) {
				return nil, errGone
			}
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			return r.buf[:n], nil
		}
		n += m
	}
}

func open(path string) (int, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// readNames lists the entries of dir whose names are process (or thread)
// ids, as strings and numbers, appending to ids.
func readNames(dir string, ids []int, names []string) ([]int, []string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return ids, names, err
	}
	defer f.Close()
	all, err := f.Readdirnames(-1)
	if err != nil {
		return ids, names, err
	}
	for _, n := range all {
		if v, ok := parseUint([]byte(n)); ok && v > 0 && v <= 1<<31 {
			ids = append(ids, int(v))
			names = append(names, n)
		}
	}
	return ids, names, nil
}

func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// clip shortens a bad input for an error message.
func clip(b []byte) string {
	const max = 80
	if len(b) > max {
		b = b[:max]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
