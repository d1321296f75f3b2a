package rawtrace

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options, Pipeline and NewWithSinks stand in for the delivery core so that
// the sinks build on their own; the real ones replace this file.

// Options are what a command tells the Pipeline about itself.
type Options struct {
	Job      string
	Instance string
	SpoolDir string
	Log      *slog.Logger
	Now      func() time.Time
}

// Pipeline delivers events to its sinks.
type Pipeline struct{ sinks []Sink }

// NewWithSinks returns a Pipeline over sinks.
func NewWithSinks(cfg Config, opts Options, reg prometheus.Registerer, sinks ...Sink) (*Pipeline, error) {
	return &Pipeline{sinks: sinks}, nil
}
