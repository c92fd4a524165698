package config

import (
	"bulwark/internal/bytesize"
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
func (b ByteSize) String() string { return bytesize.Format(int64(b)) }

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
// the environment: "5s", "1m30s", "250ms", "0s", and, as nginx allows,
// days and weeks: "365d", "1w", "1d12h". A bare number is an error.
type Duration time.Duration

// Longer units than time.ParseDuration knows, as nginx writes them.
const (
	day  = 24 * time.Hour
	week = 7 * day
)

// ParseDuration parses a duration with a unit, as time.ParseDuration does,
// plus "d" (24h) and "w" (7d), and says what is wrong in terms a config
// file's reader understands.
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errDurationUnit
	}
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		return 0, fmt.Errorf("%w, got %q", errDurationUnit, s)
	}
	bad := fmt.Errorf("duration %q is not valid: use a number with a unit (ms, s, m, h, d), e.g. \"1m30s\" or \"365d\"", s)
	long, rest, ok := splitLongUnits(t)
	if !ok {
		return 0, bad
	}
	var d time.Duration
	if rest != "" {
		var err error
		if d, err = time.ParseDuration(rest); err != nil {
			return 0, bad
		}
	}
	if long > 0 && d > math.MaxInt64-long {
		return 0, fmt.Errorf("duration %q is too long", s)
	}
	return Duration(long + d), nil
}

// splitLongUnits takes the day and week terms out of an unsigned duration
// such as "1w2d3h": it returns their sum and the rest ("3h") for
// time.ParseDuration. A term of them with a fraction or a sign is not ok.
func splitLongUnits(t string) (long time.Duration, rest string, ok bool) {
	if !strings.ContainsAny(t, "dw") {
		return 0, t, true
	}
	var b strings.Builder
	for i := 0; i < len(t); {
		j := i
		for j < len(t) && (t[j] >= '0' && t[j] <= '9' || t[j] == '.') {
			j++
		}
		k := j
		for k < len(t) && (t[k] < '0' || t[k] > '9') && t[k] != '.' {
			k++
		}
		num, unit := t[i:j], t[j:k]
		if num == "" {
			return 0, "", false
		}
		switch unit {
		case "d", "w":
			n, err := strconv.ParseInt(num, 10, 64)
			per := day
			if unit == "w" {
				per = week
			}
			if err != nil || n > int64(math.MaxInt64/per) || long > math.MaxInt64-time.Duration(n)*per {
				return 0, "", false
			}
			long += time.Duration(n) * per
		default:
			b.WriteString(num + unit)
		}
		i = k
	}
	return long, b.String(), true
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String renders the duration as ParseDuration reads it: whole days as
// "365d", whole hours as "2h", whole minutes from ten minutes on as "15m", other whole seconds
// below an hour as "90s", and anything else as time.Duration does
// ("250ms", "1h0m30s").
func (d Duration) String() string {
	t := time.Duration(d)
	switch {
	case t == 0:
		return "0s"
	case t%day == 0:
		return strconv.FormatInt(int64(t/day), 10) + "d"
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
