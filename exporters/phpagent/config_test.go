package phpagent

import (
	"strings"
	"testing"
	"time"
)

// The defaults come from the flags' tags: they must be valid as they are,
// and be what the documentation (docs/agent.md) says.
func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("the flag defaults do not validate: %v", err)
	}
	for name, ok := range map[string]bool{
		"agent.socket":              c.Socket == "/run/bitville-apm/agent.sock",
		"agent.socket-mode":         c.SocketMode == 0o660,
		"agent.receive-buffer":      c.ReceiveBuffer == 8<<20,
		"agent.check-pids":          c.CheckPIDs,
		"agent.read-pause":          c.ReadPause == 20*time.Millisecond,
		"agent.spool-dir":           c.SpoolPath() == "/run/bitville-apm/agent.spool",
		"agent.spool-max-bytes":     c.SpoolMaxBytes == 64<<20,
		"web.listen-address":        c.ListenAddress == ":19100",
		"limits.endpoint-functions": c.Limits.EndpointFunctions == 10000,
		"limits.wall-functions":     c.Limits.WallFunctions == 5000,
		"fpm.poll-interval":         c.FPM.PollInterval == 10*time.Second,
		"metrics.native-histograms": !c.NativeBuckets,
	} {
		if !ok {
			t.Errorf("default of --%s is not the documented one: %+v", name, c)
		}
	}
}

func TestFileMode(t *testing.T) {
	var m FileMode
	if err := m.UnmarshalText([]byte("0640")); err != nil || m != 0o640 || m.String() != "0640" {
		t.Errorf("0640: got %v, %v", m, err)
	}
	if err := m.UnmarshalText([]byte("rw-r-----")); err == nil || !strings.Contains(err.Error(), "octal") {
		t.Errorf("rw-r-----: got %v; want an error naming octal", err)
	}
}
