package config

import (
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"
)

// FieldError is one configuration problem, located at a file line, an
// environment variable, or (for a default or profile value) only its key.
//
//	bulwark.toml:12: upstream.keepalive: must be between 0 and 10000, got -1
//	environment BULWARK_UPSTREAM_KEEPALIVE: must be between 0 and 10000, got -1
type FieldError struct {
	// File is the config file, "" when the value did not come from one.
	File string
	// Line is the 1-based line in File; 0 when unknown.
	Line int
	// Column is the 1-based column, set only for TOML syntax errors.
	Column int
	// Env is the environment variable the value came from, if any.
	Env string
	// Key is the key path, such as "upstream.keepalive"; "" for syntax errors.
	Key string
	// Err says what is wrong and what would be valid.
	Err error
}

// Error formats the problem as "file:line: key: what is wrong", or
// "environment VAR: what is wrong" for a value from the environment.
func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.Env != "":
		b.WriteString("environment " + e.Env + ": ")
	case e.File != "":
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
			if e.Column > 0 {
				b.WriteString(":" + strconv.Itoa(e.Column))
			}
		}
		b.WriteString(": ")
	}
	if e.Key != "" && e.Env == "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }

// Errors returns the *FieldErrors joined in err (by Load or Validate), or
// err itself as the only element when it is not a join.
func Errors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// sortErrors orders problems for reading: file lines first, in order, then
// environment variables, then the rest by key.
func sortErrors(errs []error) {
	rank := func(err error) (int, int, string) {
		var fe *FieldError
		if !errors.As(err, &fe) {
			return 3, 0, err.Error()
		}
		switch {
		case fe.Line > 0:
			return 0, fe.Line, fe.Key
		case fe.Env != "":
			return 1, 0, fe.Env
		default:
			return 2, 0, fe.Key
		}
	}
	slices.SortStableFunc(errs, func(a, b error) int {
		ra, la, ka := rank(a)
		rb, lb, kb := rank(b)
		return cmp.Or(cmp.Compare(ra, rb), cmp.Compare(la, lb), cmp.Compare(ka, kb))
	})
}

// errAt returns a FieldError for key located where the key's value came
// from: its line in the file, its environment variable, or nowhere.
func (c *Config) errAt(key string, err error) *FieldError {
	fe := &FieldError{Key: key, Err: err}
	// An indexed key ("tls.certificates[1].key") is located at its element
	// when the element has a line of its own, else at its list.
	candidates := []string{key}
	if i := strings.Index(key, "]"); i >= 0 {
		candidates = append(candidates, key[:i+1])
	}
	if base, _, cut := strings.Cut(key, "["); cut {
		candidates = append(candidates, base)
	}
	for _, k := range candidates {
		loc, ok := c.locs[k]
		if !ok {
			continue
		}
		switch {
		case loc.env != "":
			fe.Env = loc.env
		case loc.line > 0:
			fe.File, fe.Line = c.File, loc.line
		}
		break
	}
	return fe
}
