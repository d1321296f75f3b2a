package phpagent

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Socket is the bound agent socket. Close removes its file, unless another
// daemon has replaced it meanwhile.
type Socket struct {
	*net.UnixConn
	path string
	ino  uint64
	// QueueLen is the most datagrams the kernel queues on the socket,
	// whatever its receive buffer: net.unix.max_dgram_qlen when the socket
	// was made (0 when unknown). QueueRaised says the daemon raised it.
	QueueLen    int
	QueueRaised bool
	QueueErr    error // why it could not be raised to Config.MinQueueLen
}

// dgramQlenPath holds the kernel's queue limit for unix datagram sockets,
// copied into each socket when it is created. The default of 10 means a
// daemon that falls ten datagrams behind makes the PHP workers drop.
var dgramQlenPath = "/proc/sys/net/unix/max_dgram_qlen"

// ensureDgramQlen raises net.unix.max_dgram_qlen to min when it is lower
// and the daemon may (root in the init network namespace), and returns the
// value in force.
func ensureDgramQlen(min int) (qlen int, raised bool, err error) {
	qlen, err = readProcInt(dgramQlenPath)
	if err != nil {
		return 0, false, err
	}
	if min <= 0 || qlen >= min {
		return qlen, false, nil
	}
	if err := os.WriteFile(dgramQlenPath, []byte(strconv.Itoa(min)), 0o644); err != nil {
		return qlen, false, fmt.Errorf("cannot raise net.unix.max_dgram_qlen from %d to %d (run `sysctl -w net.unix.max_dgram_qlen=%d` as root, or see deploy/sysctl): %w", qlen, min, min, err)
	}
	return min, true, nil
}

// Close closes the socket and removes its file.
func (s *Socket) Close() error {
	err := s.UnixConn.Close()
	var st syscall.Stat_t
	if syscall.Stat(s.path, &st) == nil && st.Ino == s.ino {
		_ = os.Remove(s.path)
	}
	return err
}

// ListenSocket binds the agent's unix datagram socket at cfg.Socket with the
// configured mode, group and receive buffer. A socket file left by a crashed
// daemon is replaced; a socket another live daemon is reading is not, and
// neither is a file that is not a socket.
func ListenSocket(cfg Config) (*Socket, error) {
	path := cfg.Socket
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("cannot create the directory of socket %s: %w", path, err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	// Before the socket exists: the kernel copies the limit into it.
	qlen, raised, qerr := ensureDgramQlen(cfg.MinQueueLen)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("cannot listen on socket %s: %w", path, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		conn.Close()
		return nil, fmt.Errorf("cannot stat socket %s: %w", path, err)
	}
	sock := &Socket{UnixConn: conn, path: path, ino: st.Ino, QueueLen: qlen, QueueRaised: raised, QueueErr: qerr}
	fail := func(err error) (*Socket, error) {
		sock.Close()
		return nil, err
	}
	if err := shareWithGroup("socket", path, cfg.SocketGroup, fs.FileMode(cfg.SocketMode)); err != nil {
		return fail(err)
	}
	setReceiveBuffer(conn, int(cfg.ReceiveBuffer))
	return sock, nil
}

// shareWithGroup gives path (the socket or the spool, named by what) to
// group, unless it is empty, and sets its mode: what the PHP workers may
// write to is theirs through the group.
func shareWithGroup(what, path, group string, mode fs.FileMode) error {
	if group != "" {
		gid, err := lookupGroup(group)
		if err != nil {
			return err
		}
		if err := os.Chown(path, -1, gid); err != nil {
			return fmt.Errorf("cannot give %s %s to group %s: %w", what, path, group, err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("cannot set mode %o on %s %s: %w", mode.Perm(), what, path, err)
	}
	return nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot inspect socket path %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("cannot use %s as the agent socket: it exists and is not a socket", path)
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err == nil {
		c.Close()
		return fmt.Errorf("cannot use %s as the agent socket: another process is bound to it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cannot remove stale socket %s: %w", path, err)
	}
	return nil
}

func lookupGroup(g string) (int, error) {
	if gid, err := strconv.Atoi(g); err == nil {
		return gid, nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return 0, fmt.Errorf("cannot find socket group %q: %w", g, err)
	}
	gid, err := strconv.Atoi(grp.Gid)
	if err != nil {
		return 0, fmt.Errorf("cannot use gid %q of group %q: %w", grp.Gid, g, err)
	}
	return gid, nil
}

// setReceiveBuffer asks for size bytes: as root with SO_RCVBUFFORCE, which
// may exceed net.core.rmem_max, else with SO_RCVBUF, which the kernel caps.
// What was granted is read back by ReceiveBuffer.
func setReceiveBuffer(conn *net.UnixConn, size int) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size) != nil {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
		}
	})
}

// ReceiveBuffer returns the socket's receive buffer as the kernel reports it.
func ReceiveBuffer(conn *net.UnixConn) (int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		n, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	}); err != nil {
		return 0, err
	}
	return n, gerr
}

// wmemDefaultPath holds the send buffer a new socket gets: how many bytes
// of its datagrams a PHP worker may have waiting before its sends fail.
var wmemDefaultPath = "/proc/sys/net/core/wmem_default"

// readProcInt reads an integer from a /proc/sys file.
func readProcInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("cannot read %s: %w", path, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("cannot parse %s: %w", path, err)
	}
	return n, nil
}
