package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// FlagSet binds a command's flags to fields of a Config and resolves the
// three sources in order: file, environment, flags.
type FlagSet struct {
	fs  *flag.FlagSet
	cfg *Config
	// defaults, when set, adjusts Default() for this command.
	defaults func(*Config)
	path     string
	given    []given // flags as they appeared on the command line
	vals     map[string]*recorded
	args     []string
}

type given struct{ name, value string }

// NewFlagSet starts a command's flags. Usage text is printed for -h and on
// a flag error; every command gets --config.
func NewFlagSet(name, usage string, out io.Writer) *FlagSet {
	f := &FlagSet{
		fs:   flag.NewFlagSet(name, flag.ContinueOnError),
		vals: make(map[string]*recorded),
	}
	cfg := Default()
	f.cfg = &cfg
	f.fs.SetOutput(out)
	f.fs.Usage = func() {
		fmt.Fprintf(out, "%s\nFlags:\n", strings.TrimRight(usage, "\n")+"\n")
		f.fs.PrintDefaults()
		fmt.Fprint(out, "\nEvery flag can also be set in the environment (shown for each flag) or in the\n"+
			"YAML file given with --config; flags win over the environment, which wins over the file.\n")
	}
	f.fs.StringVar(&f.path, "config", os.Getenv("SLUICE_CONFIG"), "YAML configuration file (env SLUICE_CONFIG)")
	return f
}

// Config is the configuration the flags bind to, for binding them.
func (f *FlagSet) Config() *Config { return f.cfg }

// Args are the positional arguments, which may stand before, between or
// after the flags (sluice tail TOPIC -n 5).
func (f *FlagSet) Args() []string { return f.args }

// Usage prints the command's help.
func (f *FlagSet) Usage() { f.fs.Usage() }

// SetDefaults changes this command's defaults, under the file, the
// environment and the flags. Call it before binding flags, so that --help
// shows them.
func (f *FlagSet) SetDefaults(fn func(*Config)) {
	f.defaults = fn
	fn(f.cfg)
}

// Parse resolves the configuration. It returns flag.ErrHelp for -h.
func (f *FlagSet) Parse(args []string) (Config, error) {
	f.args = nil
	for {
		if err := f.fs.Parse(args); err != nil {
			return Config{}, err
		}
		rest := f.fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			f.args = append(f.args, rest...)
			break
		}
		f.args = append(f.args, rest[0])
		args = rest[1:]
	}
	// The flags have been written into cfg; start again from the defaults
	// and apply the sources in order of precedence.
	*f.cfg = Default()
	if f.defaults != nil {
		f.defaults(f.cfg)
	}
	if f.path != "" {
		if err := f.cfg.loadFile(f.path); err != nil {
			return Config{}, err
		}
	}
	for name, v := range f.vals {
		env := EnvName(name)
		s, ok := os.LookupEnv(env)
		if !ok || s == "" {
			continue
		}
		v.reset()
		if err := v.setAll(s); err != nil {
			return Config{}, fmt.Errorf("environment %s=%q: %w", env, s, err)
		}
	}
	reset := make(map[string]bool)
	for _, g := range f.given {
		v := f.vals[g.name]
		if !reset[g.name] {
			v.reset()
			reset[g.name] = true
		}
		if err := v.Value.Set(g.value); err != nil {
			return Config{}, fmt.Errorf("flag --%s: %w", g.name, err)
		}
	}
	return *f.cfg, nil
}

// EnvName is the environment variable of a flag: --http-addr is
// SLUICE_HTTP_ADDR.
func EnvName(flagName string) string {
	return "SLUICE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// recorded wraps a flag's value to note each time the command line sets it.
type recorded struct {
	flag.Value
	name  string
	f     *FlagSet
	reset func()
	// setAll applies an environment value; lists take comma-separated items.
	setAll func(string) error
}

// String is also called by the flag package on a zero recorded, to tell
// whether a flag's value is its zero value when printing defaults.
func (r *recorded) String() string {
	if r == nil || r.Value == nil {
		return ""
	}
	return r.Value.String()
}

func (r *recorded) Set(s string) error {
	if err := r.Value.Set(s); err != nil {
		return err
	}
	r.f.given = append(r.f.given, given{r.name, s})
	return nil
}

func (r *recorded) IsBoolFlag() bool {
	b, ok := r.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func (f *FlagSet) bind(v flag.Value, name, usage string, reset func(), setAll func(string) error) {
	if setAll == nil {
		setAll = v.Set
	}
	r := &recorded{Value: v, name: name, f: f, reset: reset, setAll: setAll}
	f.vals[name] = r
	f.fs.Var(r, name, fmt.Sprintf("%s (env %s)", usage, EnvName(name)))
}

func noReset() {}

// String binds a string flag to p, a field of Config().
func (f *FlagSet) String(p *string, name, usage string) {
	f.bind((*stringValue)(p), name, usage, noReset, nil)
}

// Bool binds a boolean flag.
func (f *FlagSet) Bool(p *bool, name, usage string) {
	f.bind((*boolValue)(p), name, usage, noReset, nil)
}

// Int binds an integer flag.
func (f *FlagSet) Int(p *int, name, usage string) {
	f.bind((*intValue)(p), name, usage, noReset, nil)
}

// Float binds a number flag.
func (f *FlagSet) Float(p *float64, name, usage string) {
	f.bind((*floatValue)(p), name, usage, noReset, nil)
}

// Int32 binds a 32-bit integer flag.
func (f *FlagSet) Int32(p *int32, name, usage string) {
	f.bind((*int32Value)(p), name, usage, noReset, nil)
}

// Duration binds a duration flag such as 5s or 250ms.
func (f *FlagSet) Duration(p *time.Duration, name, usage string) {
	f.bind((*durationValue)(p), name, usage, noReset, nil)
}

// Bytes binds a size flag such as 1MiB or 65536.
func (f *FlagSet) Bytes(p *ByteSize, name, usage string) {
	f.bind(p, name, usage, noReset, nil)
}

// List binds a flag that may repeat, and may hold comma-separated items.
// A source that sets it replaces what earlier sources set.
func (f *FlagSet) List(p *[]string, name, usage string) {
	v := (*listValue)(p)
	f.bind(v, name, usage, func() { *p = nil }, v.Set)
}

type stringValue string

func (s *stringValue) Set(v string) error { *s = stringValue(v); return nil }
func (s *stringValue) String() string     { return string(*s) }

type boolValue bool

func (b *boolValue) Set(v string) error {
	x, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("want true or false, got %q", v)
	}
	*b = boolValue(x)
	return nil
}
func (b *boolValue) String() string   { return strconv.FormatBool(bool(*b)) }
func (b *boolValue) IsBoolFlag() bool { return true }

type intValue int

func (i *intValue) Set(v string) error {
	x, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("want a whole number, got %q", v)
	}
	*i = intValue(x)
	return nil
}
func (i *intValue) String() string { return strconv.Itoa(int(*i)) }

type floatValue float64

func (x *floatValue) Set(v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		return fmt.Errorf("want a non-negative number, got %q", v)
	}
	*x = floatValue(f)
	return nil
}
func (x *floatValue) String() string { return strconv.FormatFloat(float64(*x), 'g', -1, 64) }

type int32Value int32

func (i *int32Value) Set(v string) error {
	x, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return fmt.Errorf("want a whole number, got %q", v)
	}
	*i = int32Value(x)
	return nil
}
func (i *int32Value) String() string { return strconv.Itoa(int(*i)) }

type durationValue time.Duration

func (d *durationValue) Set(v string) error {
	x, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want a duration such as 5s or 250ms, got %q", v)
	}
	*d = durationValue(x)
	return nil
}
func (d *durationValue) String() string { return time.Duration(*d).String() }

type listValue []string

func (l *listValue) Set(v string) error {
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*l = append(*l, item)
		}
	}
	return nil
}
func (l *listValue) String() string { return strings.Join(*l, ",") }

// IsHelp reports whether err is the request for help, not a failure.
func IsHelp(err error) bool { return errors.Is(err, flag.ErrHelp) }
