package cli

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"bulwark/internal/observe"
)

func TestRenderCerts(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	var b strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	renderCerts(line, now, []observe.CertStatus{
		{Name: "a.test", NotAfter: now.Add(50 * 24 * time.Hour), LastRenewal: now.Add(-2 * time.Hour), NextAttempt: now.Add(20 * 24 * time.Hour)},
		{Name: "b.test", LastError: "connection refused", LastErrorAt: now.Add(-30 * time.Second), NextAttempt: now.Add(30 * time.Second)},
		{Name: "c.test", NotAfter: now.Add(-time.Hour)},
	})
	want := `CERTS        a.test expires in 50d00h · renewed 2h00m ago · next attempt in 20d00h
             b.test no certificate yet · next attempt in 30s
               FAILED 30s ago: connection refused
             c.test EXPIRED 1h00m ago
`
	if got := b.String(); got != want {
		t.Errorf("renderCerts:\n%s\nwant:\n%s", got, want)
	}
}
