package host

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
)

// pressureResources are the files of /proc/pressure read, in this order.
var pressureResources = [...]string{"cpu", "io", "memory"}

// pressure is one total of a pressure file: the seconds in which some (or
// all, "full") non-idle tasks were stalled on the resource.
type pressure struct {
	Resource string  // cpu, io, memory
	Scope    string  // some, full
	Seconds  float64 // total= in µs, as seconds
}

// parsePressure parses a /proc/pressure/<resource> file (the kernel's
// Documentation/accounting/psi.rst):
//
//	some avg10=0.00 avg60=0.00 avg300=0.00 total=12345
//	full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//
// and appends its totals to out. Only the "total" of the "some" and
// "full" lines is taken; the averages are Prometheus' job (rate).
func parsePressure(resource string, b []byte, out []pressure) ([]pressure, error) {
	start, found := len(out), 0
	for line := range bytes.Lines(b) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		scope, rest, _ := bytes.Cut(line, []byte{' '})
		var name string
		switch string(scope) {
		case "some":
			name = "some"
		case "full":
			name = "full"
		default:
			return out[:start], fmt.Errorf("cannot parse pressure line %q: want some or full", clip(line))
		}
		total := -1.0
		for f := range bytes.FieldsSeq(rest) {
			k, v, ok := bytes.Cut(f, []byte{'='})
			if ok && string(k) == "total" {
				n, ok := parseUint(v)
				if !ok {
					return out[:start], fmt.Errorf("cannot parse pressure line %q: total %q is not a number", clip(line), v)
				}
				total = float64(n) / 1e6
			}
		}
		if total < 0 {
			return out[:start], fmt.Errorf("cannot parse pressure line %q: no total", clip(line))
		}
		out = append(out, pressure{Resource: resource, Scope: name, Seconds: total})
		found++
	}
	if found == 0 {
		return out[:start], fmt.Errorf("cannot parse pressure file: no some or full line")
	}
	return out, nil
}

// readPressure reads the pressure files under procPath into out. A kernel
// without PSI (no /proc/pressure, or booted with psi=0: EOPNOTSUPP) gives
// no figures and no error; a file that cannot be read or parsed is skipped
// and reported.
func readPressure(r *reader, procPath string, out []pressure) ([]pressure, error) {
	var errs []error
	for _, res := range pressureResources {
		path := filepath.Join(procPath, "pressure", res)
		b, err := r.read(path)
		if err != nil {
			if errors.Is(err, errGone) || errors.Is(err, syscall.EOPNOTSUPP) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		if out, err = parsePressure(res, b, out); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	return out, errors.Join(errs...)
}
