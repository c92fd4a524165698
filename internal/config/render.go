package config

import (
	"fmt"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Render returns the effective configuration as valid TOML: every key, each
// followed by a comment naming its source ("default", "file", "env VAR",
// "profile medium"), under a header saying which profile is in force and
// why. A non-empty admin.token is rendered as "<redacted>", and so are the
// values of app.env and the password in observe.database. With an app
// command, comments under app.env list the environment the app gets.
func (c *Config) Render() string {
	var b strings.Builder
	b.WriteString("# Effective Bulwark configuration; each key says where its value came from.\n")
	if c.File != "" {
		fmt.Fprintf(&b, "# file: %s\n", c.File)
	} else {
		b.WriteString("# file: none\n")
	}
	if c.Resolved != "" {
		fmt.Fprintf(&b, "# profile in force: %s (%s)\n", c.Resolved, c.ProfileReason)
	}
	if c.MachineMemory > 0 {
		fmt.Fprintf(&b, "# machine memory: %s\n", humanBytes(c.MachineMemory))
	}
	for _, w := range c.Warnings {
		fmt.Fprintf(&b, "# warning: %s\n", w)
	}
	root := reflect.ValueOf(c).Elem()
	section := ""
	var certs []CertPair
	for _, k := range schemaKeys() {
		if k.kind == kindTables {
			continue // after every table (renderTables)
		}
		if k.section == "" && section == "" && !strings.HasSuffix(b.String(), "\n\n") {
			b.WriteString("\n")
		}
		if k.section != section {
			if section == "tls" {
				flushCerts(&b, c, certs)
			}
			section = k.section
			fmt.Fprintf(&b, "\n[%s]\n", section)
		}
		f := root.FieldByIndex(k.index)
		if k.kind == kindCertPairs {
			certs = f.Interface().([]CertPair)
			continue
		}
		val := renderValue(k, f)
		switch {
		case k.path == "admin.token" && c.Admin.Token != "":
			val = quote("<redacted>")
		case k.path == "observe.database":
			val = quote(redactURL(c.Observe.Database))
		case k.path == "app.env":
			val = renderRedactedMap(c.App.Env)
		}
		comment := c.sourceComment(k.path)
		if k.path == "memory.limit" && c.Memory.Limit == DefaultMemoryLimit {
			comment += fmt.Sprintf(" (%s)", ByteSize(c.Memory.LimitBytes()))
		}
		if k.path == "upstream.queue" && c.Sources[k.path] == SourceProfile {
			comment += fmt.Sprintf(" (half of memory.limit %s ÷ %s a waiting request)", ByteSize(c.Memory.LimitBytes()), ByteSize(QueueRequestCost))
		}
		fmt.Fprintf(&b, "%s = %s  # %s\n", k.name, val, comment)
		if k.path == "app.env" && len(c.App.Command) > 0 {
			c.renderAppEnviron(&b)
		}
	}
	if section == "tls" {
		flushCerts(&b, c, certs)
	}
	c.renderTables(&b)
	return b.String()
}

// renderRedactedMap renders [app].env with its values hidden: they are
// often secrets (SECRET_KEY, database passwords), and check's output ends
// up in tickets and chat.
func renderRedactedMap(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	var parts []string
	for _, key := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, quoteKey(key)+" = "+quote("<redacted>"))
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

// renderAppEnviron writes, as comments, the variables of the app's
// environment that Bulwark sets, [app].env values redacted.
func (c *Config) renderAppEnviron(b *strings.Builder) {
	b.WriteString("# the app gets Bulwark's environment, with:\n")
	for _, v := range c.AppEnviron() {
		switch v.From {
		case "app.env":
			fmt.Fprintf(b, "#   %s=<redacted>  (app.env)\n", v.Name)
		case "removed":
			fmt.Fprintf(b, "#   %s  (removed: Bulwark's own setting; name it in app.env to pass it on)\n", v.Name)
		case "profile":
			fmt.Fprintf(b, "#   %s=%s  (profile %s)\n", v.Name, v.Value, c.Resolved)
		default:
			fmt.Fprintf(b, "#   %s=%s  (Bulwark's environment, over the profile's)\n", v.Name, v.Value)
		}
	}
}

// flushCerts writes the [[tls.certificates]] entries, which must follow the
// other keys of [tls].
func flushCerts(b *strings.Builder, c *Config, certs []CertPair) {
	if len(certs) == 0 {
		fmt.Fprintf(b, "certificates = []  # %s\n", c.sourceComment("tls.certificates"))
		return
	}
	for _, p := range certs {
		fmt.Fprintf(b, "\n[[tls.certificates]]  # %s\n", c.sourceComment("tls.certificates"))
		fmt.Fprintf(b, "cert = %s\n", quote(p.Cert))
		fmt.Fprintf(b, "key = %s\n", quote(p.Key))
	}
}

// sourceComment says where a key's value came from.
func (c *Config) sourceComment(path string) string {
	switch s := c.Sources[path]; s {
	case SourceProfile:
		return "profile " + c.Resolved
	case SourceEnv:
		if loc, ok := c.locs[path]; ok && loc.env != "" {
			return "env " + loc.env
		}
		return "env"
	case "":
		return string(SourceDefault)
	default:
		return string(s)
	}
}

func renderValue(k keyInfo, f reflect.Value) string {
	switch k.kind {
	case kindString:
		return quote(f.String())
	case kindInt:
		return strconv.FormatInt(f.Int(), 10)
	case kindBool:
		return strconv.FormatBool(f.Bool())
	case kindSize:
		return quote(ByteSize(f.Int()).String())
	case kindDuration:
		return quote(Duration(f.Int()).String())
	case kindWorkers:
		if w := Workers(f.Int()); w == WorkersAuto {
			return quote(w.String())
		}
		return strconv.FormatInt(f.Int(), 10)
	case kindAddresses:
		if list := f.Interface().(Addresses); len(list) == 1 {
			return quote(list[0])
		}
		var parts []string
		for _, s := range f.Interface().(Addresses) {
			parts = append(parts, quote(s))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case kindStrings:
		var parts []string
		for _, s := range f.Interface().([]string) {
			parts = append(parts, quote(s))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case kindStringMap:
		m := f.Interface().(map[string]string)
		keys := make([]string, 0, len(m))
		for key := range m {
			keys = append(keys, key)
		}
		slices.Sort(keys)
		if len(keys) == 0 {
			return "{}"
		}
		var parts []string
		for _, key := range keys {
			parts = append(parts, quoteKey(key)+" = "+quote(m[key]))
		}
		return "{ " + strings.Join(parts, ", ") + " }"
	}
	return `""`
}

// redactURL hides the password of a database URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); !has {
		return s
	}
	return u.Redacted()
}

// quote returns s as a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == utf8.RuneError && len(s) > i && s[i] >= 0x80:
			b.WriteString(`\uFFFD`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// quoteKey returns k bare when TOML allows it, quoted otherwise.
func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return quote(k)
		}
	}
	return k
}
