package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// decodeFile applies a TOML document to c and returns every problem found.
//
// go-toml's decoder stops at the first error, so the document is first
// checked for syntax (reported alone, with line and column) by a generic
// decode, and then walked as an AST: every key is checked against the schema
// with its own line, and only valid values are stored.
func (c *Config) decodeFile(data []byte) (errs []error, syntax bool) {
	var generic map[string]any
	if err := toml.Unmarshal(data, &generic); err != nil {
		msg := strings.TrimPrefix(err.Error(), "toml: ")
		fe := &FieldError{File: c.File, Err: fmt.Errorf("invalid TOML: %s", msg)}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			fe.Line, fe.Column = de.Position()
		}
		return []error{fe}, true
	}
	w := &walker{c: c}
	w.p.Reset(data)
	cur := target{v: reflect.ValueOf(c).Elem()}
	for w.p.NextExpression() {
		e := w.p.Expression()
		switch e.Kind {
		case unstable.Table:
			cur = w.table(e, false)
		case unstable.ArrayTable:
			cur = w.table(e, true)
		case unstable.KeyValue:
			if cur.v.IsValid() {
				w.setKey(cur, keyParts(e), e.Value())
			}
		}
	}
	if err := w.p.Error(); err != nil {
		// Unreachable after the generic decode succeeded, but never ignore it.
		w.errs = append(w.errs, &FieldError{File: c.File, Err: fmt.Errorf("invalid TOML: %w", err)})
	}
	return w.errs, false
}

// target is where the keys of the current table go.
type target struct {
	v    reflect.Value // addressable struct or map; invalid = skip (unknown table)
	path string        // key path of the table, "" at the top level
	leaf string        // schema key the values belong to, inside a leaf (certificates, env)
}

type walker struct {
	c    *Config
	p    unstable.Parser
	errs []error
}

func keyParts(e *unstable.Node) []*unstable.Node {
	var parts []*unstable.Node
	it := e.Key()
	for it.Next() {
		parts = append(parts, it.Node())
	}
	return parts
}

func (w *walker) line(n *unstable.Node) int {
	return w.p.Shape(n.Raw).Start.Line
}

func (w *walker) fail(line int, key string, format string, args ...any) {
	w.errs = append(w.errs, &FieldError{File: w.c.File, Line: line, Key: key, Err: fmt.Errorf(format, args...)})
}

func (w *walker) mark(key string, line int) {
	w.c.Sources[key] = SourceFile
	if _, ok := w.c.locs[key]; !ok {
		w.c.locs[key] = location{line: line}
	}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// table handles a [table] or [[array.table]] header and returns the target
// for the keys that follow it.
func (w *walker) table(e *unstable.Node, array bool) target {
	parts := keyParts(e)
	line := w.line(parts[0])
	cur := target{v: reflect.ValueOf(w.c).Elem()}
	for i, part := range parts {
		name := string(part.Data)
		path := join(cur.path, name)
		last := i == len(parts)-1
		if cur.v.Kind() == reflect.Map {
			w.fail(line, path, "%s is a table of strings and cannot hold tables", cur.path)
			return target{}
		}
		f, ok := fieldByTag(cur.v, name)
		if !ok {
			w.fail(line, path, "unknown table%s", w.hint(cur, name, true))
			return target{}
		}
		switch {
		case f.Kind() == reflect.Struct:
			cur = target{v: f, path: path}
		case f.Kind() == reflect.Map && (!last || array):
			w.fail(line, path, "is a table of strings: [%s] cannot hold tables or lists", path)
			return target{}
		case f.Kind() == reflect.Map:
			if f.IsNil() {
				f.Set(reflect.MakeMap(f.Type()))
			}
			w.mark(path, line)
			cur = target{v: f, path: path, leaf: path}
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct && last && array:
			f.Set(reflect.Append(f, reflect.New(f.Type().Elem()).Elem()))
			n := f.Len() - 1
			elem := fmt.Sprintf("%s[%d]", path, n)
			w.mark(path, line)
			w.c.locs[elem] = location{line: line}
			return target{v: f.Index(n), path: elem, leaf: path}
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
			w.fail(line, path, "is a list of tables: write [[%s]] for each entry", path)
			return target{}
		default:
			w.fail(line, path, "is a key, not a table: write %s = … under [%s]", name, cur.path)
			return target{}
		}
	}
	if array {
		w.fail(line, cur.path, "is a table, not a list: write [%s]", cur.path)
		return target{}
	}
	return cur
}

// hint suggests a close name, or lists the valid ones, for an unknown name
// in table t.
func (w *walker) hint(t target, name string, asTable bool) string {
	names := tagNames(t.v.Type())
	if s := suggest(name, names); s != "" {
		if asTable {
			return fmt.Sprintf("; did you mean [%s]?", join(t.path, s))
		}
		return fmt.Sprintf("; did you mean %s?", s)
	}
	switch {
	case t.path == "":
		var keys, tables []string
		for _, n := range names {
			if f, _ := fieldByTag(t.v, n); f.Kind() == reflect.Struct {
				tables = append(tables, "["+n+"]")
			} else if f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct {
				tables = append(tables, "[["+n+"]]")
			} else {
				keys = append(keys, n)
			}
		}
		return "; valid at the top level: " + strings.Join(keys, ", ") + " and the tables " + strings.Join(tables, ", ")
	case t.leaf != "":
		return "; valid keys in [[" + t.leaf + "]]: " + strings.Join(names, ", ")
	default:
		return "; valid keys in [" + t.path + "]: " + strings.Join(names, ", ")
	}
}

// setKey stores one (possibly dotted) key of table t.
func (w *walker) setKey(t target, keys []*unstable.Node, val *unstable.Node) {
	name := string(keys[0].Data)
	line := w.line(keys[0])
	path := join(t.path, name)
	if t.v.Kind() == reflect.Map {
		var parts []string
		for _, k := range keys {
			parts = append(parts, string(k.Data))
		}
		mapKey := strings.Join(parts, ".")
		s, err := scalarText(val)
		if err != nil {
			w.fail(line, join(t.path, mapKey), "%w", err)
			return
		}
		t.v.SetMapIndex(reflect.ValueOf(mapKey), reflect.ValueOf(s))
		w.mark(t.leaf, line)
		return
	}
	f, ok := fieldByTag(t.v, name)
	if !ok {
		w.fail(line, path, "unknown key%s", w.hint(t, name, false))
		return
	}
	leaf := t.leaf
	if leaf == "" {
		leaf = path
	}
	if len(keys) > 1 {
		switch {
		case f.Kind() == reflect.Struct:
			w.setKey(target{v: f, path: path}, keys[1:], val)
		case f.Kind() == reflect.Map:
			if f.IsNil() {
				f.Set(reflect.MakeMap(f.Type()))
			}
			w.setKey(target{v: f, path: path, leaf: leaf}, keys[1:], val)
		default:
			w.fail(line, path, "is not a table, so %s.%s is not a key", path, string(keys[1].Data))
		}
		return
	}
	w.setValue(f, path, leaf, line, val)
}

// setValue stores val in field f, or records why it cannot.
func (w *walker) setValue(f reflect.Value, path, leaf string, line int, val *unstable.Node) {
	if f.Kind() == reflect.Struct {
		if val.Kind != unstable.InlineTable {
			w.fail(line, path, "expected a table, got %s", kindName(val))
			return
		}
		w.inline(target{v: f, path: path}, val)
		return
	}
	if f.Kind() == reflect.Pointer { // an optional key ([[route]]): set only when valid
		n := len(w.errs)
		p := reflect.New(f.Type().Elem())
		w.setValue(p.Elem(), path, leaf, line, val)
		if len(w.errs) == n {
			f.Set(p)
		}
		return
	}
	k := kindOf(f.Type())
	bad := func() { w.fail(line, path, "expected %s, got %s", k.expected(), kindName(val)) }
	switch k {
	case kindString:
		if val.Kind != unstable.String {
			bad()
			return
		}
		f.SetString(string(val.Data))
	case kindInt:
		if val.Kind != unstable.Integer {
			bad()
			return
		}
		n, err := strconv.ParseInt(string(val.Data), 0, 64)
		if err != nil {
			w.fail(line, path, "integer %s is out of range", val.Data)
			return
		}
		f.SetInt(n)
	case kindBool:
		if val.Kind != unstable.Bool {
			bad()
			return
		}
		f.SetBool(string(val.Data) == "true")
	case kindSize, kindDuration:
		if val.Kind == unstable.Integer || val.Kind == unstable.Float {
			if k == kindSize {
				w.fail(line, path, "%w, got %s", errSizeUnit, val.Data)
			} else {
				w.fail(line, path, "%w, got %s", errDurationUnit, val.Data)
			}
			return
		}
		if val.Kind != unstable.String {
			bad()
			return
		}
		if k == kindSize {
			b, err := ParseByteSize(string(val.Data))
			if err != nil {
				w.fail(line, path, "%w", err)
				return
			}
			f.SetInt(int64(b))
		} else {
			d, err := ParseDuration(string(val.Data))
			if err != nil {
				w.fail(line, path, "%w", err)
				return
			}
			f.SetInt(int64(d))
		}
	case kindWorkers:
		if val.Kind != unstable.Integer && val.Kind != unstable.String {
			bad()
			return
		}
		n, err := parseWorkers(string(val.Data))
		if err != nil {
			w.fail(line, path, "%w", err)
			return
		}
		f.SetInt(int64(n))
	case kindAddresses:
		switch val.Kind {
		case unstable.String:
			f.Set(reflect.ValueOf(Addresses{string(val.Data)}))
		case unstable.Array:
			f.Set(reflect.ValueOf(Addresses(w.strings(line, path, val))))
		default:
			bad()
		}
	case kindStrings:
		if val.Kind != unstable.Array {
			bad()
			return
		}
		f.Set(reflect.ValueOf(w.strings(line, path, val)))
	case kindCertPairs, kindTables:
		if val.Kind != unstable.Array {
			bad()
			return
		}
		list := reflect.MakeSlice(f.Type(), 0, 2)
		it := val.Children()
		for i := 0; it.Next(); i++ {
			el := it.Node()
			epath := fmt.Sprintf("%s[%d]", path, i)
			if el.Kind != unstable.InlineTable {
				what := "a table"
				if k == kindCertPairs {
					what = "a table with cert and key"
				}
				w.fail(line, epath, "expected %s, got %s", what, kindName(el))
				continue
			}
			list = reflect.Append(list, reflect.New(f.Type().Elem()).Elem())
			w.inline(target{v: list.Index(list.Len() - 1), path: epath, leaf: leaf}, el)
		}
		f.Set(list)
	case kindStringMap:
		if val.Kind != unstable.InlineTable {
			bad()
			return
		}
		m := reflect.MakeMap(f.Type())
		f.Set(m)
		w.inline(target{v: m, path: path, leaf: leaf}, val)
	}
	w.mark(leaf, line)
}

// inline applies the key/value pairs of an inline table to t.
// strings returns the strings of array val. Elements of the wrong type are
// reported and left out; the rest are kept so that Validate can report
// their problems too.
func (w *walker) strings(line int, path string, val *unstable.Node) []string {
	out := []string{}
	it := val.Children()
	for i := 0; it.Next(); i++ {
		el := it.Node()
		if el.Kind != unstable.String {
			w.fail(line, fmt.Sprintf("%s[%d]", path, i), "expected a string, got %s", kindName(el))
			continue
		}
		out = append(out, string(el.Data))
	}
	return out
}

func (w *walker) inline(t target, tbl *unstable.Node) {
	it := tbl.Children()
	for it.Next() {
		kv := it.Node()
		if kv.Kind != unstable.KeyValue {
			continue
		}
		w.setKey(t, keyParts(kv), kv.Value())
	}
}

// scalarText returns the text of a string, integer, float or boolean value,
// for [app].env entries, where DB_POOL_SIZE = 5 is as natural as "5".
func scalarText(val *unstable.Node) (string, error) {
	switch val.Kind {
	case unstable.String, unstable.Integer, unstable.Float, unstable.Bool:
		return string(val.Data), nil
	}
	return "", fmt.Errorf("expected a string, got %s", kindName(val))
}

// kindName names a TOML value's type for messages.
func kindName(n *unstable.Node) string {
	switch n.Kind {
	case unstable.String:
		return "string"
	case unstable.Integer:
		return "integer"
	case unstable.Float:
		return "float"
	case unstable.Bool:
		return "boolean"
	case unstable.Array:
		return "array"
	case unstable.InlineTable:
		return "table"
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return "date-time"
	}
	return strings.ToLower(n.Kind.String())
}
