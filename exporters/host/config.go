package host

import (
	"errors"
	"fmt"
	"time"

	"github.com/bitville/bitville-apm/internal/flagdefaults"
)

// Config is what the host collector reads and how much it keeps: the
// `--host.*` flags of `bitville-apm agent` and `--limits.process-names`,
// defaults and help in the tags.
type Config struct {
	Enabled      bool          `name:"host.enabled" default:"true" negatable:"" help:"Read /proc for the CPU and the running and uninterruptible (D) tasks of the host's processes by name, and the kernel's pressure-stall figures: load that is not PHP."`
	ProcPath     string        `name:"host.proc-path" default:"/proc" placeholder:"DIR" help:"Where procfs is mounted. Only <pid>/stat, <pid>/task/<tid>/stat and pressure/{cpu,io,memory} are read; never command lines or environments."`
	Interval     time.Duration `name:"host.interval" default:"5s" help:"How often /proc is read (the kernel samples the load average every 5s); /metrics serves the last reading."`
	TopNames     int           `name:"host.top-names" default:"20" help:"Process names given series of their own at each reading: the heaviest by CPU and uninterruptible tasks. The rest count as name=\"other\"; a name keeps its series while active."`
	ProcessNames int           `name:"limits.process-names" default:"200" help:"Process names with series of their own at once; more are counted as name=\"other\"."`
}

// DefaultConfig returns the defaults of the flags.
func DefaultConfig() Config {
	var c Config
	flagdefaults.Must(&c)
	return c
}

// Validate reports every problem of c at once, each naming its flag. A
// disabled collector is not checked further.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.ProcPath != "", "host.proc-path must not be empty")
	check(c.Interval >= time.Second && c.Interval <= time.Hour, "host.interval %v must be between 1s and 1h", c.Interval)
	check(c.ProcessNames >= 1, "limits.process-names %d must be at least 1", c.ProcessNames)
	check(c.TopNames >= 1 && c.TopNames <= c.ProcessNames, "host.top-names %d must be between 1 and limits.process-names %d", c.TopNames, c.ProcessNames)
	return errors.Join(errs...)
}
