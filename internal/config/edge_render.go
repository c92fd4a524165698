package config

import (
	"fmt"
	"reflect"
	"strings"
)

// renderTables writes the top-level arrays of tables ([[static]],
// [[route]]), which TOML needs after every plain table.
func (c *Config) renderTables(b *strings.Builder) {
	root := reflect.ValueOf(c).Elem()
	for _, k := range schemaKeys() {
		if k.kind != kindTables {
			continue
		}
		list := root.FieldByIndex(k.index)
		if list.Len() == 0 {
			fmt.Fprintf(b, "\n# [[%s]]: none  # %s\n", k.name, c.sourceComment(k.path))
			continue
		}
		for i := range list.Len() {
			fmt.Fprintf(b, "\n[[%s]]  # %s\n", k.name, c.sourceComment(k.path))
			el := list.Index(i)
			t := el.Type()
			for j := range t.NumField() {
				name := tomlName(t.Field(j))
				if name == "" {
					continue
				}
				f := el.Field(j)
				if f.Kind() == reflect.Pointer {
					if f.IsNil() {
						continue // not set: inherited (see the effective line)
					}
					f = f.Elem()
				}
				fmt.Fprintf(b, "%s = %s\n", name, renderValue(keyInfo{kind: kindOf(f.Type())}, f))
			}
			if k.name == "route" {
				fmt.Fprintf(b, "# effective: %s\n", c.Route[i].Effective(c))
			}
		}
	}
}
