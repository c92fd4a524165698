package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Byte-size units accepted by ParseByteSize. The binary ones (KiB, MiB, GiB)
// are powers of 1024; KB, MB and GB are powers of 1000, as their SI names say.
const (
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
)

// ByteSize is a number of bytes. In TOML and in the environment it is a
// string with a unit: "512B", "64KiB", "16KB", "50MiB", "1GiB". A bare
// number is an error, so that "max_body = 50" cannot silently mean 50 bytes.
type ByteSize int64

// errSizeUnit is returned for a size without a unit.
var errSizeUnit = errors.New(`size needs a unit, e.g. "128KiB"`)

// errDurationUnit is returned for a duration without a unit.
var errDurationUnit = errors.New(`duration needs a unit, e.g. "30s"`)

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	// Longest suffixes first so "KiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseByteSize parses a size with a unit, such as "128KiB" or "1.5GiB".
// Units are case-sensitive (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB); the
// number may have a fraction but the result must be a whole number of bytes.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errSizeUnit
	}
	for _, u := range sizeUnits {
		num, ok := strings.CutSuffix(t, u.suffix)
		if !ok {
			continue
		}
		num = strings.TrimSpace(num)
		if num == "" {
			return 0, fmt.Errorf("size %q has no number", s)
		}
		if n, err := strconv.ParseInt(num, 10, 64); err == nil {
			if n > math.MaxInt64/u.mult || n < math.MinInt64/u.mult {
				return 0, fmt.Errorf("size %q is too large", s)
			}
			return ByteSize(n * u.mult), nil
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("size %q is not a number with a unit such as \"128KiB\"", s)
		}
		v := f * float64(u.mult)
		if v >= math.MaxInt64 || v <= math.MinInt64 {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		if v != math.Trunc(v) {
			return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
		}
		return ByteSize(v), nil
	}
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		return 0, fmt.Errorf("%w, got %q", errSizeUnit, s)
	}
	return 0, fmt.Errorf("size %q has an unknown unit: use B, KiB, MiB, GiB, KB, MB or GB", s)
}

// String renders the size in the syntax ParseByteSize reads, with the largest
// binary unit that divides it exactly ("50MiB", "1536KiB", "100B"); sizes
// that are whole multiples of a decimal unit but not of a binary one keep the
// decimal unit ("16KB").
func (b ByteSize) String() string {
	n := int64(b)
	if n == 0 {
		return "0B"
	}
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}} {
		if n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// MarshalText implements encoding.TextMarshaler.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseByteSize.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Duration is a time.Duration written as a string with a unit in TOML and in
// the environment: "5s", "1m30s", "250ms", "0s". A bare number is an error.
type Duration time.Duration

// ParseDuration parses a duration with a unit, as time.ParseDuration does,
// but says what is wrong in terms a config file's reader understands.
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errDurationUnit
	}
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		return 0, fmt.Errorf("%w, got %q", errDurationUnit, s)
	}
	// Whole days lead, as caching times are written ("7d", "1d12h").
	var days time.Duration
	if i := strings.IndexByte(t, 'd'); i > 0 {
		if n, err := strconv.ParseUint(t[:i], 10, 16); err == nil {
			days, t = time.Duration(n)*24*time.Hour, t[i+1:]
		}
	}
	d := time.Duration(0)
	var err error
	if t != "" || days == 0 {
		d, err = time.ParseDuration(t)
	}
	if err != nil {
		return 0, fmt.Errorf("duration %q is not valid: use a number with a unit (ms, s, m, h, d), e.g. \"1m30s\"", s)
	}
	return Duration(days + d), nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String renders the duration as ParseDuration reads it: whole hours as
// "2h", whole minutes from ten minutes on as "15m", other whole seconds
// below an hour as "90s", and anything else as time.Duration does
// ("250ms", "1h0m30s").
func (d Duration) String() string {
	t := time.Duration(d)
	switch {
	case t == 0:
		return "0s"
	case t%time.Hour == 0:
		return strconv.FormatInt(int64(t/time.Hour), 10) + "h"
	case t%time.Minute == 0 && t >= 10*time.Minute:
		return strconv.FormatInt(int64(t/time.Minute), 10) + "m"
	case t%time.Second == 0 && t < time.Hour && t > -time.Hour:
		return strconv.FormatInt(int64(t/time.Second), 10) + "s"
	}
	return t.String()
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseDuration.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// humanBytes formats n for messages: "768.0MiB", "1.5GiB".
func humanBytes(n int64) string {
	if n >= int64(GiB) {
		return strconv.FormatFloat(float64(n)/float64(GiB), 'f', 1, 64) + "GiB"
	}
	return strconv.FormatFloat(float64(n)/float64(MiB), 'f', 1, 64) + "MiB"
}
