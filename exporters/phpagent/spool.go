package phpagent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bitville/bitville-apm/internal/protocol"
)

// The PHP agents' spool: where a PHP worker writes an end message the
// socket refused (the daemon stalled or fell behind), one file per
// message, and where the running daemon takes them in again within a
// spool interval. The format is fixed with php/src/Transport/Spool.php and
// described in php/README.md ("Spool"):
//
//   - <19-digit unix nanoseconds>-<pid>-<8 hex>.json holds one datagram
//     payload; names sort by the time the file was written;
//   - a file is written as <name>.tmp and renamed, so a .json file is whole;
//   - .bitville-spool-size holds "<bytes> <unix time counted> <evicted>":
//     the PHP agents' estimate of the size, and how many files they have
//     deleted, oldest first, to make room since the file was created. The
//     daemon only reads it, for the count.
//
// Both sides find the directory without a setting: beside the socket, with
// the socket's name less a ".sock" suffix, plus ".spool" (DerivedSpoolDir).
// The daemon creates it so that the PHP workers, which may write to the
// socket, may write there too; PHP uses the derived directory only when it
// exists, so a host without the daemon pays nothing.

// SpoolOff is the agent.spool-dir value that turns the spool off.
const SpoolOff = "off"

// DerivedSpoolDir is the spool directory the daemon and the PHP agents
// agree on for a socket path (testdata/protocol/limits.json has examples
// both sides are tested against).
func DerivedSpoolDir(socket string) string {
	return strings.TrimSuffix(socket, ".sock") + ".spool"
}

// Results of taking in a spool file.
const (
	spoolReplayed   = "replayed"   // an end message, aggregated
	spoolSkipped    = "skipped"    // a start or progress: stale by the time it is read
	spoolInvalid    = "invalid"    // not a valid message (counted in messages_total too)
	spoolUnreadable = "unreadable" // could not be read or removed
	spoolExpired    = "expired"    // older than agent.spool-max-age: dropped
	spoolEvicted    = "evicted"    // past agent.spool-max-bytes, oldest first: dropped
)

var spoolResults = []string{spoolReplayed, spoolSkipped, spoolInvalid, spoolUnreadable, spoolExpired, spoolEvicted}

// SpoolStats counts the files one pass handled, by result.
type SpoolStats struct {
	Replayed, Skipped, Invalid, Unreadable, Expired, Evicted int
}

func (s *SpoolStats) add(result string) {
	switch result {
	case spoolReplayed:
		s.Replayed++
	case spoolSkipped:
		s.Skipped++
	case spoolInvalid:
		s.Invalid++
	case spoolUnreadable:
		s.Unreadable++
	case spoolExpired:
		s.Expired++
	case spoolEvicted:
		s.Evicted++
	}
}

// PrepareSpoolDir creates the spool directory, or fixes an existing one, so
// that the socket's group may write into it: mode 2770 plus what the
// socket's mode gives others, setgid so that files keep the group.
func PrepareSpoolDir(cfg Config) error {
	dir := cfg.SpoolPath()
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o770); err != nil {
		return fmt.Errorf("cannot create spool dir %s: %w", dir, err)
	}
	mode := fs.ModeSetgid | 0o770
	if cfg.SocketMode&0o002 != 0 {
		mode |= 0o007 // the socket is world-writable: so is its spool
	}
	return shareWithGroup("spool dir", dir, cfg.SocketGroup, mode)
}

type spoolFile struct {
	name string
	size int64
	at   time.Time // from the name
}

// TakeSpool handles every whole file in the spool directory once, oldest
// first: files older than the maximum age and, past the maximum size, the
// oldest files are dropped and counted; the rest go through Handle like
// datagrams. Each file is removed before it is handled, so a request is
// never counted twice, even across a crash.
//
// Only end messages are taken in (the PHP agent spools nothing else): a
// start or progress read late would open an in-flight entry for a request
// that may be long over. A missing directory is not an error. Safe to call
// from one goroutine at a time.
func (a *Agent) TakeSpool() (SpoolStats, error) {
	var st SpoolStats
	dir := a.cfg.SpoolPath()
	if dir == "" {
		return st, nil
	}
	files, err := listSpool(dir)
	if err != nil {
		return st, err
	}
	a.countPHPEvictions(dir)
	now := a.now()
	var total int64
	for _, f := range files {
		total += f.size
	}
	a.self.spoolBacklog.Set(float64(len(files)))
	a.self.spoolBacklogBytes.Set(float64(total))
	if len(files) == 0 {
		return st, nil
	}

	var rs readerState
	var peek protocol.Decoder
	var m protocol.Message
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		result := ""
		var b []byte
		switch {
		case a.cfg.SpoolMaxAge > 0 && !f.at.IsZero() && now.Sub(f.at) > a.cfg.SpoolMaxAge:
			result = spoolExpired
		case total > int64(a.cfg.SpoolMaxBytes):
			result = spoolEvicted
		default:
			if b, err = readSpoolFile(path); err != nil {
				result = spoolUnreadable
			} else if derr := peek.Decode(b, &m); derr != nil {
				result = spoolInvalid
			} else if m.Type != protocol.TypeEnd {
				result = spoolSkipped
			} else {
				result = spoolReplayed
			}
		}
		total -= f.size
		// Remove before handling: a file handled and then found again
		// (after a crash, say) would count its request twice. An
		// unreadable file goes too, or it would be counted every pass.
		if rerr := os.Remove(path); errors.Is(rerr, fs.ErrNotExist) {
			continue // taken by someone else meanwhile
		} else if rerr != nil {
			result, err = spoolUnreadable, rerr
		}
		switch result {
		case spoolReplayed, spoolInvalid:
			a.Handle(b, &rs) // an invalid one is counted with its reason
		case spoolUnreadable:
			if n, ok := a.spoolErrs.Allow(); ok {
				a.log.Warn("cannot take in spool file", "file", path, "err", err, "suppressed_since_last", n)
			}
		}
		st.add(result)
		a.self.spoolFiles[result].Inc()
	}
	a.self.spoolBacklog.Set(0)
	a.self.spoolBacklogBytes.Set(0)
	return st, nil
}

// spoolSizeFile is the PHP agents' bookkeeping file in the spool.
const spoolSizeFile = ".bitville-spool-size"

// countPHPEvictions adds to bitville_agent_php_spool_evicted_total what the
// PHP agents evicted since the last look. The file's count only grows; a
// smaller one means the file was made anew, and counts from zero.
func (a *Agent) countPHPEvictions(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, spoolSizeFile))
	if err != nil {
		return
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return // an older agent's file, or read while being rewritten
	}
	n, err := strconv.ParseUint(f[2], 10, 63)
	if err != nil {
		return
	}
	d := n
	if n >= a.phpEvicted {
		d = n - a.phpEvicted
	}
	a.phpEvicted = n
	a.self.phpSpoolEvicted.Add(float64(d))
}

// listSpool returns the whole spool files of dir, oldest first.
func listSpool(dir string) ([]spoolFile, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read spool dir %s: %w", dir, err)
	}
	files := make([]spoolFile, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".json") {
			continue
		}
		f := spoolFile{name: name}
		if info, err := e.Info(); err == nil {
			f.size = info.Size()
		}
		if i := strings.IndexByte(name, '-'); i > 0 {
			if ns, err := strconv.ParseInt(name[:i], 10, 64); err == nil {
				f.at = time.Unix(0, ns)
			}
		}
		files = append(files, f)
	}
	// Names start with the creation time in nanoseconds; equal-length
	// numbers sort correctly as strings, and the time is 19 digits until
	// the year 2286.
	slices.SortFunc(files, func(x, y spoolFile) int { return strings.Compare(x.name, y.name) })
	return files, nil
}

// readSpoolFile reads a spool file, at most one byte more than a datagram
// may hold, so that an oversize file is rejected as too_large like an
// oversize datagram.
func readSpoolFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, protocol.MaxDatagramSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read spool file %s: %w", path, err)
	}
	return b, nil
}
