package phpagent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bitville/bitville-apm/internal/protocol"
)

// Results of replaying a spool file.
const (
	spoolReplayed   = "replayed"   // an end message, aggregated
	spoolSkipped    = "skipped"    // a start or progress: stale once the daemon restarts
	spoolInvalid    = "invalid"    // not a valid message (counted in messages_total too)
	spoolUnreadable = "unreadable" // could not be read or removed
)

// SpoolStats counts the files one replay handled, by result.
type SpoolStats struct {
	Replayed, Skipped, Invalid, Unreadable int
}

// ReplaySpool feeds the messages that PHP workers spooled to dir while the
// daemon was unreachable (php/README.md, "Spool") through the same path as
// datagrams, oldest first, and removes each file once handled. A spool file
// is one datagram payload named <unix-ns>-<pid>-<random>.json; files still
// being written end in .tmp and are left alone.
//
// Only end messages are replayed: they carry the finished request, whereas a
// start or progress from before the restart would open an in-flight entry
// for a request that is long over. A missing dir is not an error.
func (a *Agent) ReplaySpool(dir string) (SpoolStats, error) {
	var st SpoolStats
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("cannot read spool dir %s: %w", dir, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json") {
			names = append(names, e.Name())
		}
	}
	// Names start with the creation time in nanoseconds; equal-length
	// numbers sort correctly as strings, and the time is 19 digits until
	// the year 2286.
	slices.Sort(names)

	var rs readerState
	var peek protocol.Decoder
	var m protocol.Message
	for _, name := range names {
		path := filepath.Join(dir, name)
		b, err := readSpoolFile(path)
		result := spoolReplayed
		switch {
		case err != nil:
			result = spoolUnreadable
		default:
			if derr := peek.Decode(b, &m); derr != nil {
				result = spoolInvalid
			} else if m.Type != protocol.TypeEnd {
				result = spoolSkipped
			}
		}
		// Remove before handling: a file that crashes nothing but is
		// handled twice after a restart would count its request twice.
		if err == nil {
			if rerr := os.Remove(path); rerr != nil {
				result, err = spoolUnreadable, rerr
			}
		}
		switch result {
		case spoolReplayed:
			a.Handle(b, &rs)
			st.Replayed++
		case spoolInvalid:
			a.Handle(b, &rs) // counted as invalid with its reason
			st.Invalid++
		case spoolSkipped:
			st.Skipped++
		case spoolUnreadable:
			st.Unreadable++
			a.log.Warn("cannot replay spool file", "file", path, "err", err)
		}
		a.self.spoolFiles.WithLabelValues(result).Inc()
	}
	return st, nil
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
