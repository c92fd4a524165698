package acme

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
)

// A CA that refuses an order as rateLimited (RFC 8555 §6.6) says when to
// ask again. The engine does not read that time: it retries on its own
// schedule (1, 2, 2, 5 minutes...). A hold keeps it from asking: while a
// name is held, its attempt is refused before any request leaves, through
// the engine's documented abort (an error from the cert_obtaining event).
// Holds live in the engine's storage, so a restart, an upgrade or another
// instance sharing the storage waits too.

// Bounds on a hold.
const (
	// holdWithoutTime is the wait when the CA names no time: an hour, the
	// shortest window among Let's Encrypt's limits on orders and failed
	// validations.
	holdWithoutTime = time.Hour
	// longestHold caps the CA's time, so a wrong clock or a bad message
	// cannot stop renewals for good: a week is Let's Encrypt's longest
	// window (certificates per name set, 168 h).
	longestHold = 7 * 24 * time.Hour
)

// retryAfterText finds the time Let's Encrypt (Boulder) writes in every
// rate-limit problem: "..., retry after 2006-01-02 15:04:05 UTC: see ...".
// The CA's Retry-After header says the same, but the ACME client does not
// pass headers on with a problem.
var retryAfterText = regexp.MustCompile(`retry after (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC`)

// caHold is a CA's request not to be asked for a name before Until.
type caHold struct {
	Until   time.Time `json:"until"`
	At      time.Time `json:"at"`      // when the CA refused
	Problem string    `json:"problem"` // the CA's words
}

// rateLimitHold is the hold err asks for: ok is false unless err carries
// the CA's rateLimited problem.
func rateLimitHold(err error, now time.Time) (h caHold, ok bool) {
	var p acme.Problem
	if !errors.As(err, &p) || (p.Type != acme.ProblemTypeRateLimited && p.Status != 429) {
		return caHold{}, false
	}
	h = caHold{Until: now.Add(holdWithoutTime), At: now, Problem: p.Error()}
	if m := retryAfterText.FindStringSubmatch(p.Detail); m != nil {
		if t, err := time.ParseInLocation(time.DateTime, m[1], time.UTC); err == nil {
			h.Until = t
		}
	}
	if limit := now.Add(longestHold); h.Until.After(limit) {
		h.Until = limit
	}
	return h, true
}

// holdBook keeps the holds of one CA in storage, with a copy in memory
// for Status.
type holdBook struct {
	storage certmagic.Storage
	prefix  string // storage key prefix, one per CA
	log     *slog.Logger
	now     func() time.Time

	mu   sync.Mutex
	seen map[string]caHold // by normalized name; guarded by mu
}

func newHoldBook(storage certmagic.Storage, issuerKey string, log *slog.Logger) *holdBook {
	return &holdBook{
		storage: storage,
		prefix:  path.Join("bulwark", "ca_holds", certmagic.StorageKeys.Safe(issuerKey)),
		log:     log,
		now:     time.Now,
		seen:    make(map[string]caHold),
	}
}

func (b *holdBook) key(name string) string {
	return path.Join(b.prefix, certmagic.StorageKeys.Safe(normalize(name))+".json")
}

// record keeps h for name; a storage failure leaves it in memory only.
func (b *holdBook) record(ctx context.Context, name string, h caHold) {
	b.mu.Lock()
	b.seen[normalize(name)] = h
	b.mu.Unlock()
	data, err := json.Marshal(h)
	if err == nil {
		err = b.storage.Store(ctx, b.key(name), data)
	}
	if err != nil {
		b.log.Warn("acme: could not store the CA's rate-limit hold; a restart will not know it",
			"name", name, "until", h.Until, "err", err)
	}
}

// active is name's hold if it has not ended, reading storage so that a
// hold recorded by another instance or an earlier process counts.
func (b *holdBook) active(ctx context.Context, name string) (caHold, bool) {
	h, err := b.load(ctx, name)
	if err != nil {
		b.log.Warn("acme: could not read the CA's rate-limit hold; using this process's copy",
			"name", name, "err", err)
		h, _ = b.cached(name)
	}
	return h, b.now().Before(h.Until)
}

func (b *holdBook) load(ctx context.Context, name string) (caHold, error) {
	data, err := b.storage.Load(ctx, b.key(name))
	if errors.Is(err, fs.ErrNotExist) {
		b.forget(name)
		return caHold{}, nil
	}
	if err != nil {
		return caHold{}, err
	}
	var h caHold
	if err := json.Unmarshal(data, &h); err != nil {
		return caHold{}, fmt.Errorf("%s: %w", b.key(name), err)
	}
	b.mu.Lock()
	b.seen[normalize(name)] = h
	b.mu.Unlock()
	return h, nil
}

// clear drops name's hold once a certificate was obtained.
func (b *holdBook) clear(ctx context.Context, name string) {
	if _, ok := b.cached(name); !ok {
		return
	}
	b.forget(name)
	if err := b.storage.Delete(ctx, b.key(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		b.log.Warn("acme: could not delete an ended rate-limit hold", "name", name, "err", err)
	}
}

func (b *holdBook) forget(name string) {
	b.mu.Lock()
	delete(b.seen, normalize(name))
	b.mu.Unlock()
}

// cached is this process's copy of name's hold, ended or not.
func (b *holdBook) cached(name string) (caHold, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, ok := b.seen[normalize(name)]
	return h, ok
}

// onEvent is the engine's event callback: holds first, then the status
// book. An error returned for cert_obtaining aborts that attempt before
// any request to the CA; the engine retries on its schedule.
func (m *Manager) onEvent(ctx context.Context, event string, data map[string]any) error {
	holds := m.holds.Load()
	name, _ := data["identifier"].(string)
	if holds != nil && m.names[normalize(name)] {
		switch event {
		case "cert_obtaining":
			if h, ok := holds.active(ctx, name); ok {
				m.log.Warn("acme: not asking the CA yet: it refused this name as rate limited",
					"name", name, "until", h.Until.UTC().Format(time.RFC3339), "problem", h.Problem)
				return fmt.Errorf("the CA asked not to be asked for %s before %s (rateLimited)",
					name, h.Until.UTC().Format(time.RFC3339))
			}
		case "cert_failed":
			if err, _ := data["error"].(error); err != nil {
				if h, ok := rateLimitHold(err, holds.now()); ok {
					holds.record(ctx, name, h)
				}
			}
		case "cert_obtained":
			holds.clear(ctx, name)
		}
	}
	return m.status.onEvent(ctx, event, data)
}
