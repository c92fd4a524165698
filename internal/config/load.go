package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// EnvPrefix starts every environment variable that overrides a key.
const EnvPrefix = "BULWARK_"

// LoadOptions says where Load reads from.
type LoadOptions struct {
	// Path is the config file; "" = no file (defaults, environment, profile).
	Path string
	// Environ is the environment, as os.Environ returns it; nil = none.
	Environ []string
	// ProcRoot is where meminfo and self/cgroup are read; "" = "/proc".
	ProcRoot string
	// SysRoot is where fs/cgroup/<path>/memory.max (v2) and
	// fs/cgroup/memory/<path>/memory.limit_in_bytes (v1) are read; "" = "/sys".
	SysRoot string
}

func (o LoadOptions) withDefaults() LoadOptions {
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.SysRoot == "" {
		o.SysRoot = "/sys"
	}
	return o
}

// Load builds the effective configuration: Default, then the file (strict),
// then BULWARK_<SECTION>_<KEY> environment variables, then the profile for
// the profile keys neither set, then Validate. The error joins every
// problem found (each a *FieldError, see Errors), in file-line order; a
// TOML syntax error is reported alone. The Config is returned even with an
// error, filled as far as it could be, except when the file cannot be read.
func Load(o LoadOptions) (*Config, error) {
	o = o.withDefaults()
	c := Default()
	var errs []error
	if o.Path != "" {
		c.File = o.Path
		data, err := os.ReadFile(o.Path)
		if err != nil {
			return c, fmt.Errorf("reading config file: %w", err)
		}
		ferrs, syntax := c.decodeFile(data)
		if syntax {
			return c, errors.Join(ferrs...)
		}
		errs = append(errs, ferrs...)
	}
	c.environ = o.Environ
	errs = append(errs, c.applyEnv(o.Environ)...)
	c.resolveProfile(o.ProcRoot, o.SysRoot)
	errs = append(errs, Errors(c.Validate())...)
	sortErrors(errs)
	return c, errors.Join(errs...)
}

// applyEnv applies BULWARK_<SECTION>_<KEY> variables and returns the
// problems found. Variables naming a known section but an unknown key are
// errors; those with an unknown section are ignored, with a warning when
// the section is a near miss of a real one.
func (c *Config) applyEnv(environ []string) []error {
	var errs []error
	sections := sectionNames()
	// Sorted, so that errors and warnings come out in a stable order.
	vars := slices.Clone(environ)
	slices.Sort(vars)
	for _, kv := range vars {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		rest, ok := strings.CutPrefix(name, EnvPrefix)
		if !ok || rest == "" {
			continue
		}
		if rest == "PROFILE" {
			if err := c.setEnv("profile", name, value); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		section, key := "", ""
		for _, s := range sections {
			if k, ok := strings.CutPrefix(rest, strings.ToUpper(s)+"_"); ok {
				section, key = s, k
				break
			}
		}
		if section == "" && tableListEnv(rest) != "" {
			c.Warnings = append(c.Warnings, fmt.Sprintf("environment %s ignored: [[%s]] can only be set in the config file",
				name, tableListEnv(rest)))
			continue
		}
		if section == "" {
			if w := envMisspelling(name, rest, sections); w != "" {
				c.Warnings = append(c.Warnings, w)
			}
			continue
		}
		var names []string
		path := ""
		for _, k := range schemaKeys() {
			if k.section != section {
				continue
			}
			names = append(names, envName(k.path))
			if strings.ToUpper(k.name) == key {
				path = k.path
			}
		}
		if path == "" {
			msg := "unknown key in [" + section + "]"
			if s := suggest(name, names); s != "" {
				msg += "; did you mean " + s + "?"
			} else {
				msg += "; valid: " + strings.Join(names, ", ")
			}
			errs = append(errs, &FieldError{Env: name, Err: errors.New(msg)})
			continue
		}
		if err := c.setEnv(path, name, value); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// tableListEnv returns the array of tables ("static", "route") that rest,
// a BULWARK_ variable without its prefix, names, or "".
func tableListEnv(rest string) string {
	for _, k := range schemaKeys() {
		if k.kind == kindTables && strings.HasPrefix(rest, strings.ToUpper(k.name)+"_") {
			return k.name
		}
	}
	return ""
}

// envName returns the environment variable for a key path.
func envName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// envMisspelling returns a warning when rest (a BULWARK_ variable without
// its prefix) looks like a misspelt section or profile, "" otherwise.
func envMisspelling(name, rest string, sections []string) string {
	first, tail, _ := strings.Cut(rest, "_")
	if s := suggest(first, sections); s != "" {
		fixed := EnvPrefix + strings.ToUpper(s)
		if tail != "" {
			fixed += "_" + tail
		}
		return fmt.Sprintf("environment %s ignored: no section %q; did you mean %s?", name, strings.ToLower(first), fixed)
	}
	if suggest(rest, []string{"PROFILE"}) != "" {
		return fmt.Sprintf("environment %s ignored; did you mean %sPROFILE?", name, EnvPrefix)
	}
	return ""
}

// setEnv parses value as the type of key path and stores it, or returns a
// FieldError naming the variable.
func (c *Config) setEnv(path, name, value string) error {
	k, ok := lookupKey(path)
	if !ok {
		return &FieldError{Env: name, Err: fmt.Errorf("unknown key %s", path)}
	}
	fail := func(err error) error { return &FieldError{Env: name, Key: path, Err: err} }
	f := reflect.ValueOf(c).Elem().FieldByIndex(k.index)
	switch k.kind {
	case kindString:
		f.SetString(value)
	case kindInt:
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return fail(fmt.Errorf("expected an integer, got %q", value))
		}
		f.SetInt(n)
	case kindBool:
		switch strings.TrimSpace(value) {
		case "true":
			f.SetBool(true)
		case "false":
			f.SetBool(false)
		default:
			return fail(fmt.Errorf("expected true or false, got %q", value))
		}
	case kindSize:
		b, err := ParseByteSize(value)
		if err != nil {
			return fail(err)
		}
		f.SetInt(int64(b))
	case kindDuration:
		d, err := ParseDuration(value)
		if err != nil {
			return fail(err)
		}
		f.SetInt(int64(d))
	case kindWorkers:
		n, err := parseWorkers(value)
		if err != nil {
			return fail(err)
		}
		f.SetInt(int64(n))
	case kindAddresses:
		list := Addresses{}
		for _, s := range strings.Split(value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
		f.Set(reflect.ValueOf(list))
	case kindStrings:
		var list []string
		if path == "app.command" {
			var err error
			if list, err = parseCommand(value); err != nil {
				return fail(err)
			}
		} else {
			list = []string{}
			for _, s := range strings.Split(value, ",") {
				if s = strings.TrimSpace(s); s != "" {
					list = append(list, s)
				}
			}
		}
		f.Set(reflect.ValueOf(list))
	default:
		return fail(fmt.Errorf("%s cannot be set from the environment; set it in the config file", path))
	}
	c.Sources[path] = SourceEnv
	c.locs[path] = location{env: name}
	return nil
}

// parseCommand reads app.command from the environment: a TOML array of
// strings (["uvicorn", "app:app"]) or words separated by white space.
func parseCommand(value string) ([]string, error) {
	v := strings.TrimSpace(value)
	if !strings.HasPrefix(v, "[") {
		return strings.Fields(v), nil
	}
	var doc struct {
		V []string `toml:"v"`
	}
	if err := toml.Unmarshal([]byte("v = "+v), &doc); err != nil {
		return nil, errors.New(`expected a TOML array of strings such as ["uvicorn", "app:app"], or words separated by spaces`)
	}
	if doc.V == nil {
		doc.V = []string{}
	}
	return doc.V, nil
}
