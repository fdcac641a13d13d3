package config

import (
	"encoding"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FlagSet is a command's flags over a configuration of type C, resolving
// its sources in order: C's defaults (with the command's own, from
// SetDefaults), the YAML file given with --config (or SLUICE_CONFIG), the
// SLUICE_* environment, then the flags. A setting's flag is declared where
// the setting is, in its struct tag (flag:"http-addr"), and its
// environment variable is named after it (SLUICE_HTTP_ADDR); a command
// chooses which sections of C it offers as flags.
type FlagSet[C any] struct {
	fs       *flag.FlagSet
	defaults func() C
	adjust   []func(*C)
	load     func(c *C, path string) error
	// display holds the defaults the help shows; scratch takes each flag
	// as it is parsed, to check its value.
	display, scratch C
	path             string
	given            []given
	vals             map[string]*binding[C]
	order            []string
	args             []string
}

type given struct{ name, value string }

// binding is a flag: at finds its value in a config.
type binding[C any] struct {
	f    *FlagSet[C]
	name string
	at   func(*C) flag.Value
	list bool
	// local resets a value that is not part of C to its default.
	local func()
}

// NewFlagSet starts a command's flags. defaults makes C's defaults, and
// load reads a YAML file over a config. Usage text is printed for -h and
// on a flag error; every command takes --config.
func NewFlagSet[C any](name, usage string, out io.Writer, defaults func() C, load func(c *C, path string) error) *FlagSet[C] {
	f := &FlagSet[C]{
		fs:       flag.NewFlagSet(name, flag.ContinueOnError),
		defaults: defaults,
		load:     load,
		display:  defaults(),
		scratch:  defaults(),
		vals:     map[string]*binding[C]{},
	}
	f.fs.SetOutput(out)
	f.fs.Usage = func() {
		fmt.Fprintf(out, "%s\nFlags:\n", strings.TrimRight(usage, "\n")+"\n")
		f.fs.PrintDefaults()
		fmt.Fprint(out, "\nEvery flag can also be set in the environment (shown for each flag) or in the\n"+
			"YAML file given with --config; flags win over the environment, which wins over the file.\n"+
			"docs/configuration.md lists every setting of the file.\n")
	}
	f.fs.StringVar(&f.path, "config", os.Getenv("SLUICE_CONFIG"), "YAML configuration file (env SLUICE_CONFIG)")
	return f
}

// Args are the positional arguments, which may stand before, between or
// after the flags (sluice tail TOPIC -n 5).
func (f *FlagSet[C]) Args() []string { return f.args }

// Usage prints the command's help.
func (f *FlagSet[C]) Usage() { f.fs.Usage() }

// ConfigFile is the file given with --config or SLUICE_CONFIG, if any.
func (f *FlagSet[C]) ConfigFile() string { return f.path }

// SetDefaults changes this command's defaults, under the file, the
// environment and the flags. Call it before binding flags, so that --help
// shows them.
func (f *FlagSet[C]) SetDefaults(fn func(*C)) {
	f.adjust = append(f.adjust, fn)
	fn(&f.display)
	fn(&f.scratch)
}

// Section offers as flags the settings of the struct at(c) points to that
// have a flag tag, in it and in the structs it holds; with names, only
// those flags.
func (f *FlagSet[C]) Section(at func(*C) any, names ...string) {
	t := reflect.TypeOf(at(&f.display)).Elem()
	f.section(t, nil, func(c *C) []any { return []any{at(c)} }, names)
}

// SectionEach is Section over several structs of one type, such as the
// settings every sink of a list shares: a flag sets the setting in each of
// at(c), which point to structs like proto.
func (f *FlagSet[C]) SectionEach(proto any, at func(*C) []any, names ...string) {
	f.section(reflect.TypeOf(proto).Elem(), nil, at, names)
}

func (f *FlagSet[C]) section(t reflect.Type, index []int, at func(*C) []any, only []string) {
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		if name := sf.Tag.Get("flag"); name != "" {
			if len(only) > 0 && !slices.Contains(only, name) {
				continue
			}
			usage := sf.Tag.Get("doc")
			if j := strings.Index(usage, ". "); j > 0 {
				usage = usage[:j]
			}
			usage = strings.TrimSuffix(usage, ".")
			f.bind(name, usage, func(c *C) flag.Value {
				var vs multiValue
				for _, s := range at(c) {
					vs = append(vs, valueOf(reflect.ValueOf(s).Elem().FieldByIndex(idx)))
				}
				if len(vs) == 1 {
					return vs[0]
				}
				return vs
			}, sf.Type.Kind() == reflect.Slice, nil)
			continue
		}
		if sf.Type.Kind() == reflect.Struct && sf.Type != durationType {
			f.section(sf.Type, idx, at, only)
		}
	}
}

// valueOf is a flag.Value over a settings field.
func valueOf(v reflect.Value) flag.Value {
	p := v.Addr().Interface()
	switch p := p.(type) {
	case flag.Value:
		return p
	case *string:
		return (*stringValue)(p)
	case *bool:
		return (*boolValue)(p)
	case *int:
		return (*intValue)(p)
	case *int32:
		return (*int32Value)(p)
	case *int16:
		return (*int16Value)(p)
	case *float64:
		return (*floatValue)(p)
	case *time.Duration:
		return (*durationValue)(p)
	case *[]string:
		return (*listValue)(p)
	case encoding.TextUnmarshaler:
		return textValue{p}
	}
	panic(fmt.Sprintf("config: a flag over a setting of type %T", p)) // a programming error, caught by every command's --help test
}

func (f *FlagSet[C]) bind(name, usage string, at func(*C) flag.Value, list bool, local func()) {
	b := &binding[C]{f: f, name: name, at: at, list: list, local: local}
	f.vals[name] = b
	f.order = append(f.order, name)
	f.fs.Var(b, name, fmt.Sprintf("%s (env %s)", usage, EnvName(name)))
}

// String binds a flag to p, a value of the command's own outside C.
func (f *FlagSet[C]) String(p *string, name, usage string) {
	def := *p
	f.bind(name, usage, func(*C) flag.Value { return (*stringValue)(p) }, false, func() { *p = def })
}

// Bool binds a boolean flag to p, outside C.
func (f *FlagSet[C]) Bool(p *bool, name, usage string) {
	def := *p
	f.bind(name, usage, func(*C) flag.Value { return (*boolValue)(p) }, false, func() { *p = def })
}

// Int binds an integer flag to p, outside C.
func (f *FlagSet[C]) Int(p *int, name, usage string) {
	def := *p
	f.bind(name, usage, func(*C) flag.Value { return (*intValue)(p) }, false, func() { *p = def })
}

// Float binds a number flag to p, outside C.
func (f *FlagSet[C]) Float(p *float64, name, usage string) {
	def := *p
	f.bind(name, usage, func(*C) flag.Value { return (*floatValue)(p) }, false, func() { *p = def })
}

// Duration binds a duration flag to p, outside C.
func (f *FlagSet[C]) Duration(p *time.Duration, name, usage string) {
	def := *p
	f.bind(name, usage, func(*C) flag.Value { return (*durationValue)(p) }, false, func() { *p = def })
}

// List binds a flag that may repeat, and may hold comma-separated items,
// to p, outside C.
func (f *FlagSet[C]) List(p *[]string, name, usage string) {
	def := *p
	f.bind(name, usage, func(*C) flag.Value { return (*listValue)(p) }, true, func() { *p = def })
}

// Alias makes old another name of the flag name, for settings renamed.
func (f *FlagSet[C]) Alias(old, name string) {
	b := f.vals[name]
	f.bind(old, "the same as --"+name, b.at, b.list, b.local)
}

// Parse resolves the configuration. It returns flag.ErrHelp for -h.
func (f *FlagSet[C]) Parse(args []string) (C, error) {
	var zero C
	f.args = nil
	for {
		if err := f.fs.Parse(args); err != nil {
			return zero, err
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
	cfg := f.defaults()
	for _, fn := range f.adjust {
		fn(&cfg)
	}
	if f.path != "" {
		if err := f.load(&cfg, f.path); err != nil {
			return zero, err
		}
	}
	for _, name := range f.order {
		b := f.vals[name]
		if b.local != nil {
			b.local()
		}
		env := EnvName(name)
		s, ok := os.LookupEnv(env)
		if !ok || s == "" {
			continue
		}
		if err := b.apply(&cfg, s, true); err != nil {
			return zero, fmt.Errorf("environment %s=%q: %w", env, s, err)
		}
	}
	reset := map[string]bool{}
	for _, g := range f.given {
		b := f.vals[g.name]
		if err := b.apply(&cfg, g.value, !reset[g.name]); err != nil {
			return zero, fmt.Errorf("flag --%s: %w", g.name, err)
		}
		reset[g.name] = true
	}
	return cfg, nil
}

// apply sets s; fresh empties a list first, so that a source replaces what
// the sources before it set rather than adding to it.
func (b *binding[C]) apply(c *C, s string, fresh bool) error {
	v := b.at(c)
	if b.list && fresh {
		resetList(v)
	}
	return v.Set(s)
}

func resetList(v flag.Value) {
	switch v := v.(type) {
	case *listValue:
		v.reset()
	case multiValue:
		for _, e := range v {
			resetList(e)
		}
	}
}

// multiValue sets one setting in several structs; it shows the first's.
type multiValue []flag.Value

func (m multiValue) Set(s string) error {
	for _, v := range m {
		if err := v.Set(s); err != nil {
			return err
		}
	}
	return nil
}

func (m multiValue) String() string {
	if len(m) == 0 {
		return ""
	}
	return m[0].String()
}

func (m multiValue) IsBoolFlag() bool {
	if len(m) == 0 {
		return false
	}
	b, ok := m[0].(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// EnvName is the environment variable of a flag: --http-addr is
// SLUICE_HTTP_ADDR.
func EnvName(flagName string) string {
	return "SLUICE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// String is also called by the flag package on a zero binding, to tell
// whether a flag's value is its zero value when printing defaults.
func (b *binding[C]) String() string {
	if b == nil || b.f == nil {
		return ""
	}
	return b.at(&b.f.display).String()
}

// Set checks a command-line value and records it, to be applied over the
// file and the environment.
func (b *binding[C]) Set(s string) error {
	v := b.at(&b.f.scratch)
	if b.list {
		resetList(v)
	}
	if err := v.Set(s); err != nil {
		return err
	}
	if b.local != nil {
		b.local() // applied again in order by Parse
	}
	b.f.given = append(b.f.given, given{b.name, s})
	return nil
}

func (b *binding[C]) IsBoolFlag() bool {
	v, ok := b.at(&b.f.display).(interface{ IsBoolFlag() bool })
	return ok && v.IsBoolFlag()
}

// IsHelp reports whether err is the request for help, not a failure.
func IsHelp(err error) bool { return errors.Is(err, flag.ErrHelp) }

type textValue struct{ encoding.TextUnmarshaler }

func (t textValue) Set(s string) error { return t.UnmarshalText([]byte(s)) }
func (t textValue) String() string {
	if m, ok := t.TextUnmarshaler.(encoding.TextMarshaler); ok {
		b, _ := m.MarshalText()
		return string(b)
	}
	return ""
}

type int16Value int16

func (i *int16Value) Set(v string) error {
	x, err := strconv.ParseInt(v, 10, 16)
	if err != nil {
		return fmt.Errorf("want a whole number, got %q", v)
	}
	*i = int16Value(x)
	return nil
}
func (i *int16Value) String() string { return strconv.Itoa(int(*i)) }

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
func (l *listValue) reset()         { *l = nil }
