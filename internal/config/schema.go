package config

import (
	"reflect"
	"slices"
	"strings"
	"sync"
)

// kind is the TOML shape a key takes.
type kind int

const (
	kindString kind = iota
	kindInt
	kindBool
	kindSize
	kindDuration
	kindStrings
	kindCertPairs
	kindStringMap
	kindAddresses // a string, or an array of strings
	kindTables    // a top-level array of tables: [[static]], [[route]]
	kindWorkers   // an integer, or "auto"
)

var (
	byteSizeType  = reflect.TypeFor[ByteSize]()
	durationType  = reflect.TypeFor[Duration]()
	addressesType = reflect.TypeFor[Addresses]()
	workersType   = reflect.TypeFor[Workers]()
)

// keyInfo describes one leaf key of the schema.
type keyInfo struct {
	path    string // "upstream.keepalive"
	section string // "upstream"; "" for top-level keys
	name    string // "keepalive"
	index   []int  // field index from Config
	kind    kind
}

// schemaKeys lists every leaf key of Config in declaration order. It is
// computed once from the struct tags and never changed afterwards.
var schemaKeys = sync.OnceValue(func() []keyInfo {
	var out []keyInfo
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		name := tomlName(f)
		if name == "" {
			continue
		}
		if f.Type.Kind() == reflect.Struct && f.Type != byteSizeType && f.Type != durationType {
			for j := range f.Type.NumField() {
				g := f.Type.Field(j)
				gname := tomlName(g)
				if gname == "" {
					continue
				}
				out = append(out, keyInfo{
					path:    name + "." + gname,
					section: name,
					name:    gname,
					index:   []int{i, j},
					kind:    kindOf(g.Type),
				})
			}
			continue
		}
		k := kindOf(f.Type)
		if k == kindCertPairs {
			k = kindTables // at the top level a list of tables is a section of its own
		}
		out = append(out, keyInfo{path: name, name: name, index: []int{i}, kind: k})
	}
	return out
})

// sectionNames lists the tables of the file in declaration order.
func sectionNames() []string {
	var out []string
	for _, k := range schemaKeys() {
		if k.section != "" && !slices.Contains(out, k.section) {
			out = append(out, k.section)
		}
	}
	return out
}

// lookupKey finds a leaf key by path.
func lookupKey(path string) (keyInfo, bool) {
	for _, k := range schemaKeys() {
		if k.path == path {
			return k, true
		}
	}
	return keyInfo{}, false
}

// tomlName returns the toml tag name of a field, "" for untagged or "-".
func tomlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if tag == "-" {
		return ""
	}
	return tag
}

func kindOf(t reflect.Type) kind {
	switch {
	case t == byteSizeType:
		return kindSize
	case t == durationType:
		return kindDuration
	case t == addressesType:
		return kindAddresses
	case t == workersType:
		return kindWorkers
	case t.Kind() == reflect.String:
		return kindString
	case t.Kind() == reflect.Int:
		return kindInt
	case t.Kind() == reflect.Bool:
		return kindBool
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return kindStrings
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return kindCertPairs
	case t.Kind() == reflect.Map:
		return kindStringMap
	}
	panic("config: unsupported field type " + t.String())
}

// tagNames returns the toml names of a struct type's fields.
func tagNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		if n := tomlName(t.Field(i)); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// fieldByTag returns the field of struct v whose toml name is name.
func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if tomlName(t.Field(i)) == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// expected describes, for messages, what a key of kind k takes.
func (k kind) expected() string {
	switch k {
	case kindString:
		return "a string"
	case kindInt:
		return "an integer"
	case kindBool:
		return "a boolean (true or false)"
	case kindSize:
		return `a size string such as "128KiB"`
	case kindDuration:
		return `a duration string such as "30s"`
	case kindStrings:
		return "an array of strings"
	case kindCertPairs:
		return "an array of tables with cert and key"
	case kindStringMap:
		return "a table of strings"
	case kindAddresses:
		return "a string, or an array of strings"
	case kindTables:
		return "an array of tables"
	case kindWorkers:
		return `an integer, or "auto"`
	}
	return "a value"
}

// suggest returns the candidate closest to name, or "" when none is close.
// Hyphens and case are ignored, and small edit distances are allowed.
func suggest(name string, candidates []string) string {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "-", "_")) }
	n := norm(name)
	best, bestD := "", 1<<30
	for _, c := range candidates {
		d := editDistance(n, norm(c))
		if d < bestD {
			best, bestD = c, d
		}
	}
	limit := 2
	if len(n) <= 4 {
		limit = 1
	}
	if bestD <= limit {
		return best
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
