// Package config is how Sluice reads its configuration: one YAML file, the
// SLUICE_* environment and flags, each overriding the one before.
//
// Each component's config type owns its settings: the YAML key, the flag
// and the documentation of each are in its struct tags (yaml, flag, doc,
// secret), its defaults in its constructor and its checks in its Validate.
// A top-level type composes them (package pipeline); this package reads
// YAML into any such type strictly, reporting every unknown key and bad
// value with its path (DecodeYAML), writes it back with secrets masked
// (EncodeYAML), describes it for the reference (Describe), and binds the
// flags its tags name (FlagSet).
package config

import (
	"errors"
	"fmt"
	"os"
)

// LoadFile reads the YAML file at path over v, a pointer to a config
// struct.
func LoadFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	errs := Errors(DecodeYAML(b, v))
	for i, err := range errs {
		errs[i] = fmt.Errorf("config %s: %w", path, err)
	}
	return errors.Join(errs...)
}

// Prefix puts path before each of err's errors, the ones errors.Join
// joined one by one, so that a component's Validate can name its own keys
// and the config that holds it say where it is.
func Prefix(path string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range Errors(err) {
		var pe *PathError
		if errors.As(e, &pe) {
			out = append(out, &PathError{Path: Join(path, pe.Path), Line: pe.Line, Err: pe.Err})
			continue
		}
		out = append(out, &PathError{Path: path, Err: e})
	}
	return errors.Join(out...)
}

// Errors lists err's errors, the ones errors.Join joined one by one and
// nested joins flattened, to print one a line.
func Errors(err error) []error {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, Errors(e)...)
	}
	return out
}

// Field is an error about the setting key of the component validating it.
func Field(key string, format string, args ...any) error {
	return &PathError{Path: key, Err: fmt.Errorf(format, args...)}
}
