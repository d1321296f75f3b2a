package flagdefaults_test

import (
	"testing"
	"time"

	"github.com/alecthomas/units"

	"github.com/bitville/bitville-apm/internal/flagdefaults"
)

type limits struct {
	Endpoints int `name:"limits.endpoints" default:"500" help:"."`
}

type config struct {
	Socket   string           `name:"x.socket" default:"/run/x.sock" help:"."`
	Interval time.Duration    `name:"x.interval" default:"1s" help:"."`
	Buffer   units.Base2Bytes `name:"x.buffer" default:"8MiB" help:"."`
	Check    bool             `name:"x.check" default:"true" negatable:"" help:"."`
	List     []string         `name:"x.list" help:"."`
	Required string           `name:"x.required" required:"" help:"."`
	Limits   limits           `embed:""`
}

func TestApply(t *testing.T) {
	t.Setenv("X_SOCKET", "/from/env") // not read
	var c config
	if err := flagdefaults.Apply(&c); err != nil {
		t.Fatal(err)
	}
	want := config{Socket: "/run/x.sock", Interval: time.Second, Buffer: 8 << 20, Check: true, Limits: limits{Endpoints: 500}}
	if c.Socket != want.Socket || c.Interval != want.Interval || c.Buffer != want.Buffer || c.Check != want.Check || c.Limits != want.Limits || c.List != nil || c.Required != "" {
		t.Errorf("got %+v; want %+v", c, want)
	}
}

func TestApplyBadDefault(t *testing.T) {
	var c struct {
		N int `name:"n" default:"many" help:"."`
	}
	if err := flagdefaults.Apply(&c); err == nil {
		t.Error("a default that does not parse: got no error")
	}
}
