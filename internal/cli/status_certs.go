package cli

import (
	"time"

	"bulwark/internal/observe"
)

// renderCerts adds a line per name [acme] manages: time left, last
// renewal and next attempt, and under it the last failure, loudly.
func renderCerts(line func(string, ...any), now time.Time, certs []observe.CertStatus) {
	for i, c := range certs {
		label := ""
		if i == 0 {
			label = "CERTS"
		}
		state := "no certificate yet"
		switch {
		case c.NotAfter.IsZero():
		case !c.NotAfter.After(now):
			state = "EXPIRED " + uptimeAt(now, c.NotAfter) + " ago"
		default:
			state = "expires in " + uptimeAt(c.NotAfter, now)
		}
		if !c.LastRenewal.IsZero() {
			state += " · renewed " + uptimeAt(now, c.LastRenewal) + " ago"
		}
		if !c.NextAttempt.IsZero() && c.NextAttempt.After(now) {
			state += " · next attempt in " + uptimeAt(c.NextAttempt, now)
		}
		line("%-12s %s %s", label, c.Name, state)
		if c.LastError != "" {
			line("%-12s   FAILED %s ago: %s", "", uptimeAt(now, c.LastErrorAt), c.LastError)
		}
	}
}
