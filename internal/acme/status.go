package acme

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// renewalWindowRatio is the engine's default share of a certificate's
// lifetime, at its end, in which it is renewed.
const renewalWindowRatio = 1.0 / 3

// NameStatus is the state of one managed name.
type NameStatus struct {
	// Name is the domain.
	Name string
	// NotAfter is when the certificate served for it expires; zero when
	// it has none yet.
	NotAfter time.Time
	// RenewAfter is when renewal is due by the renewal window (the last
	// third of the lifetime); the CA's renewal information (ARI) may
	// bring it forward. Zero without a certificate.
	RenewAfter time.Time
	// Attempt is when this process last started an order for the name;
	// zero if it has not.
	Attempt time.Time
	// NextAttempt is when the next order is due: after a failure, the
	// engine's backoff from LastErrorAt (1, 2, 2, 5, 10 minutes... up to 6
	// hours; a renewal then waits for the next maintenance check); else
	// RenewAfter. After a rateLimited refusal, no earlier than the time the
	// CA gave (see holdBook). Zero while the first order is under way.
	NextAttempt time.Time
	// LastRenewal is when this process last obtained or renewed its
	// certificate; zero if it has not (a certificate loaded from storage
	// was obtained earlier).
	LastRenewal time.Time
	// LastError is the last failure to obtain or renew, "" when the last
	// attempt succeeded; LastErrorAt is when it happened. A failed renewal
	// keeps the current certificate and is retried with backoff.
	LastError   string
	LastErrorAt time.Time
}

// nameState is what the engine's events tell about one name.
type nameState struct {
	attempt, renewed, errorAt time.Time
	lastErr                   string
	failures                  int // in a row, since the last success
}

// retryBackoff mirrors the engine's retry schedule (certmagic's
// retryIntervals, async.go, v0.25.6), to say when it tries again; the last
// entry repeats.
var retryBackoff = [...]time.Duration{
	time.Minute, 2 * time.Minute, 2 * time.Minute, 5 * time.Minute,
	10 * time.Minute, 10 * time.Minute, 10 * time.Minute,
	20 * time.Minute, 20 * time.Minute, 20 * time.Minute, 20 * time.Minute,
	30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute,
	time.Hour, time.Hour, time.Hour, 2 * time.Hour, 2 * time.Hour, 3 * time.Hour, 3 * time.Hour, 6 * time.Hour,
}

// nextRetry is when the engine retries after failures failed attempts in
// a row, the last at at.
func nextRetry(at time.Time, failures int) time.Time {
	i := min(max(failures-1, 0), len(retryBackoff)-1)
	return at.Add(retryBackoff[i])
}

// statusBook records the engine's events per name and publishes
// bulwark_cert_expiry_seconds.
type statusBook struct {
	log    *slog.Logger
	expiry func(name string) (notBefore, notAfter time.Time)
	names  []string

	mu    sync.Mutex
	state map[string]*nameState // guarded by mu
}

func newStatusBook(names []string, expiry func(string) (time.Time, time.Time), set *metrics.Set, log *slog.Logger) *statusBook {
	b := &statusBook{log: log, expiry: expiry, names: names, state: make(map[string]*nameState)}
	for _, n := range names {
		b.state[normalize(n)] = &nameState{}
		// Seconds left on the certificate served; 0 while there is none,
		// so that an expiry alert also fires for a name never obtained.
		name := fmt.Sprintf(`bulwark_cert_expiry_seconds{name=%q}`, normalize(n))
		set.UnregisterMetric(name) // a Manager rebuilt on the same set
		set.GetOrCreateGauge(name, func() float64 {
			_, na := expiry(n)
			if na.IsZero() {
				return 0
			}
			return time.Until(na).Seconds()
		})
	}
	return b
}

// onEvent is the engine's event callback: it must return quickly.
func (b *statusBook) onEvent(_ context.Context, event string, data map[string]any) error {
	id, _ := data["identifier"].(string)
	b.mu.Lock()
	st := b.state[normalize(id)]
	if st == nil {
		b.mu.Unlock()
		return nil
	}
	now := time.Now()
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtaining":
		st.attempt = now
	case "cert_obtained":
		st.renewed, st.lastErr, st.errorAt, st.failures = now, "", time.Time{}, 0
	case "cert_failed":
		st.lastErr, st.errorAt = fmt.Sprint(data["error"]), now
		st.failures++
	}
	lastErr := st.lastErr
	b.mu.Unlock()
	switch event {
	case "cert_obtained":
		b.log.Info("acme: certificate obtained", "name", id, "renewal", renewal)
	case "cert_failed":
		// Loud: this is the line an operator must see. The engine retries
		// with backoff, and a renewal keeps serving the old certificate.
		b.log.Error("acme: obtaining a certificate failed; retrying with backoff",
			"name", id, "renewal", renewal, "err", lastErr)
	}
	return nil
}

// Status describes every managed name, in configured order.
func (m *Manager) Status() []NameStatus {
	b := m.status
	out := make([]NameStatus, 0, len(b.names))
	for _, n := range b.names {
		ns := NameStatus{Name: n}
		nb, na := b.expiry(n)
		if !na.IsZero() {
			ns.NotAfter = na
			life := na.Sub(nb)
			ns.RenewAfter = na.Add(-time.Duration(float64(life) * renewalWindowRatio))
		}
		b.mu.Lock()
		if st := b.state[normalize(n)]; st != nil {
			ns.Attempt, ns.LastRenewal = st.attempt, st.renewed
			ns.LastError, ns.LastErrorAt = st.lastErr, st.errorAt
			if st.lastErr != "" {
				ns.NextAttempt = nextRetry(st.errorAt, st.failures)
			}
		}
		b.mu.Unlock()
		if ns.NextAttempt.IsZero() {
			ns.NextAttempt = ns.RenewAfter
		}
		if holds := m.holds.Load(); holds != nil {
			if h, ok := holds.cached(n); ok && holds.now().Before(h.Until) {
				if ns.LastError == "" { // refused before this process started
					ns.LastError, ns.LastErrorAt = h.Problem, h.At
				}
				if h.Until.After(ns.NextAttempt) {
					ns.NextAttempt = h.Until
				}
			}
		}
		out = append(out, ns)
	}
	return out
}

// String is one line per name, for logs and tests.
func (s NameStatus) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", s.Name)
	if s.NotAfter.IsZero() {
		b.WriteString("no certificate yet")
	} else {
		fmt.Fprintf(&b, "expires %s", s.NotAfter.UTC().Format(time.RFC3339))
	}
	if s.LastError != "" {
		fmt.Fprintf(&b, "; last error %s: %s", s.LastErrorAt.UTC().Format(time.RFC3339), s.LastError)
	}
	if !s.NextAttempt.IsZero() {
		fmt.Fprintf(&b, "; next attempt %s", s.NextAttempt.UTC().Format(time.RFC3339))
	}
	return b.String()
}
