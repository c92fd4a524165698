package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// RateOff is the rate_per_ip value that turns the limit off.
const RateOff = "off"

// errRateSyntax says what a rate looks like.
var errRateSyntax = errors.New(`must be a rate such as "20/s burst 40", "600/m" or "off"`)

// ParseRate parses a request rate: a count per second, minute or hour
// ("20/s", "600/m", "1000/h"; nginx's "20r/s" too), optionally followed by
// "burst N", the requests one client may send at once. Without a burst the
// burst is the count itself, so "600/m" allows 600 at once and then one
// every 100 ms. "off" (or "") returns 0, 0: no limit.
func ParseRate(s string) (perSecond float64, burst int, err error) {
	t := strings.TrimSpace(s)
	if t == "" || t == RateOff {
		return 0, 0, nil
	}
	f := strings.Fields(t)
	if len(f) != 1 && (len(f) != 3 || f[1] != "burst") {
		return 0, 0, fmt.Errorf("%w, got %q", errRateSyntax, s)
	}
	num, unit, ok := strings.Cut(f[0], "/")
	num = strings.TrimSuffix(num, "r") // nginx spells it 20r/s
	n, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, 0, fmt.Errorf("%w, got %q", errRateSyntax, s)
	}
	switch unit {
	case "s":
		perSecond = n
	case "m":
		perSecond = n / 60
	case "h":
		perSecond = n / 3600
	default:
		return 0, 0, fmt.Errorf("%w: the unit after / is s, m or h, got %q", errRateSyntax, s)
	}
	burst = int(math.Ceil(n))
	if len(f) == 3 {
		burst, err = strconv.Atoi(f[2])
		if err != nil || burst < 1 {
			return 0, 0, fmt.Errorf("%w: the burst is a whole number of requests, at least 1, got %q", errRateSyntax, s)
		}
	}
	if burst > 1_000_000 || n > 1_000_000 {
		return 0, 0, fmt.Errorf("%w: at most 1000000 requests, got %q", errRateSyntax, s)
	}
	return perSecond, burst, nil
}

// Rate returns RatePerIP parsed (see ParseRate); 0, 0 when it is off or
// does not parse (Validate reports it).
func (l Limits) Rate() (perSecond float64, burst int) {
	r, b, err := ParseRate(l.RatePerIP)
	if err != nil {
		return 0, 0
	}
	return r, b
}
