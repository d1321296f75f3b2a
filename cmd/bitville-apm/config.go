package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/alecthomas/kong"
	"go.yaml.in/yaml/v3"
)

// yamlResolver supplies flag values from a YAML file. Keys are the flag
// names, either dotted (`agent.socket: /x`) or nested (`agent: {socket: /x}`).
// Unknown keys are errors, so a typo never silently falls back to a default.
// Precedence is command line, then environment, then this file, then the
// default: a flag whose environment variable is set is not resolved here.
type yamlResolver struct {
	values map[string]any
}

func loadYAMLConfig(r io.Reader) (kong.Resolver, error) {
	dec := yaml.NewDecoder(r)
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("cannot parse configuration file: %w", err)
	}
	values := map[string]any{}
	if err := flatten("", doc, values); err != nil {
		return nil, err
	}
	return &yamlResolver{values: values}, nil
}

func flatten(prefix string, m map[string]any, out map[string]any) error {
	for k, v := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok {
			if err := flatten(key, sub, out); err != nil {
				return err
			}
			continue
		}
		if _, dup := out[key]; dup {
			return fmt.Errorf("configuration key %q is set twice", key)
		}
		out[key] = v
	}
	return nil
}

// Validate rejects keys that name no flag of the selected command.
func (r *yamlResolver) Validate(app *kong.Application) error {
	known := map[string]bool{}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			known[f.Name] = true
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(app.Node)
	var unknown []string
	for k := range r.values {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return fmt.Errorf("unknown configuration keys: %s", strings.Join(unknown, ", "))
	}
	return nil
}

func (r *yamlResolver) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	v, ok := r.values[flag.Name]
	if !ok {
		return nil, nil
	}
	for _, env := range flag.Envs {
		if _, set := os.LookupEnv(env); set {
			return nil, nil
		}
	}
	switch x := v.(type) {
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, ","), nil
	case nil:
		return nil, nil
	default:
		return fmt.Sprint(x), nil
	}
}
