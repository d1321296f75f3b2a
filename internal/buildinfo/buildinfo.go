// Package buildinfo says which build of bitville-apm is running: the version
// set at link time (-ldflags "-X .../buildinfo.Version=v1.2.3") or, failing
// that, what the Go toolchain recorded from version control.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Version is set at link time; "dev" otherwise.
var Version = "dev"

// Info describes the running binary.
type Info struct {
	Version   string
	Revision  string
	GoVersion string
}

// Get returns the build information.
func Get() Info {
	info := Info{Version: Version, Revision: "unknown", GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				info.Revision = s.Value[:12]
			}
		}
		if info.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
	}
	return info
}

// String is the one-line form printed by `bitville-apm version`.
func (i Info) String() string {
	return "bitville-apm " + i.Version + " (revision " + i.Revision + ", " + i.GoVersion + ")"
}
