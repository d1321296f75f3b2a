// Package flagdefaults fills a configuration struct from the `default` tags
// of its kong flags, so that each default is written once: in the tag that
// `--help` shows. The command embeds the same struct, so the flags and the
// configuration are one type; tests and libraries get the defaults from
// here without a command line and without reading the environment.
package flagdefaults

import (
	"fmt"

	"github.com/alecthomas/kong"
)

// Apply sets every field of target (a pointer to a struct of kong flags)
// that has a default tag to that default. It neither reads the environment
// nor validates: a configuration may be incomplete (no server yet) until
// its owner fills it in.
func Apply(target any) error {
	app, err := kong.New(target)
	if err != nil {
		return fmt.Errorf("cannot read the flags of %T: %w", target, err)
	}
	ctx, err := kong.Trace(app, nil)
	if err != nil {
		return fmt.Errorf("cannot trace the flags of %T: %w", target, err)
	}
	if err := ctx.ApplyDefaults(); err != nil {
		return fmt.Errorf("cannot apply the flag defaults of %T: %w", target, err)
	}
	return nil
}

// Must is Apply for package-level defaults, where a default tag that does
// not parse is a programming error that every test run shows.
func Must(target any) {
	if err := Apply(target); err != nil {
		panic(err)
	}
}
