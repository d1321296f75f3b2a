// Command bitville-apm is the Bitville APM suite in one binary: the per-host
// PHP agent daemon, the PostgreSQL exporter and the offenders report (top).
// Run `bitville-apm --help`.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/bitville/bitville-apm/internal/buildinfo"
)

// CLI is the command line: global flags and one subcommand.
type CLI struct {
	Config    kong.ConfigFlag `name:"config.file" placeholder:"PATH" help:"YAML file with flag values (keys are flag names, dotted or nested); unknown keys are errors. Command-line flags and environment variables take precedence."`
	LogLevel  string          `name:"log.level" default:"info" enum:"debug,info,warn,error" help:"Least severe log level to print (${enum})."`
	LogFormat string          `name:"log.format" default:"logfmt" enum:"logfmt,json" help:"Log format (${enum})."`

	Agent      AgentCmd      `cmd:"" help:"Receive PHP request messages on a unix socket and serve them as Prometheus metrics."`
	PgExporter PgExporterCmd `cmd:"" name:"pg-exporter" help:"Serve PostgreSQL statement statistics by query fingerprint (query_fp), the join to the PHP side."`
	Pushgw     PushgwCmd     `cmd:"" help:"Take pushes of metrics and raw-trace events from agents Prometheus cannot reach, one token a project; serve them on /metrics, remote-write them, forward the events to Loki and Graylog."`
	Top        TopCmd        `cmd:"" help:"Ask Prometheus which endpoints, PHP functions, SQL queries and database waits grew most in a window, against the period before it."`
	Version    VersionCmd    `cmd:"" help:"Print the version and exit."`
}

// VersionCmd prints the build information.
type VersionCmd struct{}

// Run prints the version.
func (VersionCmd) Run() error {
	fmt.Println(buildinfo.Get())
	return nil
}

func (c *CLI) logger() *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(c.LogLevel)))
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func newParser(cli *CLI) (*kong.Kong, error) {
	return kong.New(cli,
		kong.Name("bitville-apm"),
		kong.Description("Bitville APM: which requests, PHP functions and SQL queries made the load spike."),
		kong.UsageOnError(),
		kong.DefaultEnvars("BITVILLE"),
		kong.Configuration(loadYAMLConfig),
		kong.HelpOptions{Compact: true, FlagsLast: true},
	)
}

func main() {
	var cli CLI
	parser, err := newParser(&cli)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bitville-apm:", err)
		os.Exit(2)
	}
	ctx, err := parser.Parse(os.Args[1:])
	parser.FatalIfErrorf(err)
	log := cli.logger()
	if err := ctx.Run(log); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			// A command's answer to a person: one line on stderr.
			fmt.Fprintln(os.Stderr, "bitville-apm "+ctx.Command()+":", ee.err)
			os.Exit(ee.code)
		}
		log.Error("exiting", "err", err)
		os.Exit(1)
	}
}
