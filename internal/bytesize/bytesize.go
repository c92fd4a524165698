// Package bytesize writes a byte count the way the config file spells sizes
// ("20MiB", "512KiB", "1500B"), so that an answer or a log line names a
// limit as the operator configured it. Parsing stays in internal/config;
// this is the one formatter both it and the leaf packages use.
package bytesize

import "strconv"

// Format returns n in the largest unit that divides it exactly: binary
// units first (KiB … TiB), then decimal ones (KB … TB), else bytes.
func Format(n int64) string {
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
