package acme

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
)

func TestRateLimitHold(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	limited := func(detail string) acme.Problem {
		return acme.Problem{Type: acme.ProblemTypeRateLimited, Status: 429, Detail: detail}
	}
	for _, tc := range []struct {
		name   string
		err    error
		ok     bool
		wantIn time.Duration // Until - now
	}{
		{"Let's Encrypt's time", limited(`too many new orders (300) from this account in the last 3h0m0s, retry after 2026-12-05 14:30:00 UTC: see https://letsencrypt.org/docs/rate-limits/`), true, 150 * time.Minute},
		{"wrapped by the engine", fmt.Errorf("[a.test] Obtain: %w", limited(`too many failed authorizations (5) for "a.test" in the last 1h0m0s, retry after 2026-12-05 12:00:42 UTC`)), true, 42 * time.Second},
		{"no time given", limited("slow down"), true, holdWithoutTime},
		{"a time beyond a week is capped", limited("retry after 2099-01-01 00:00:00 UTC"), true, longestHold},
		{"a time already past", limited("retry after 2026-12-05 11:00:00 UTC"), true, -time.Hour},
		{"status 429 with another type", acme.Problem{Type: "urn:acme:error:rateLimited", Status: 429}, true, holdWithoutTime},
		{"another problem", acme.Problem{Type: acme.ProblemTypeRejectedIdentifier, Status: 400, Detail: "retry after 2026-12-05 14:30:00 UTC"}, false, 0},
		{"not a problem", errors.New("dial tcp: connection refused"), false, 0},
	} {
		h, ok := rateLimitHold(tc.err, now)
		if ok != tc.ok {
			t.Errorf("%s: ok = %v, want %v", tc.name, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if got := h.Until.Sub(now); got != tc.wantIn {
			t.Errorf("%s: held for %v, want %v", tc.name, got, tc.wantIn)
		}
		if !h.At.Equal(now) || h.Problem == "" {
			t.Errorf("%s: hold %+v, want At=now and the CA's words", tc.name, h)
		}
	}
}

// TestHoldBookInStorage: a hold recorded by one book is active in a new
// book on the same storage (a restart), ends at its time, and is deleted
// when a certificate is obtained.
func TestHoldBookInStorage(t *testing.T) {
	ctx := context.Background()
	storage := &certmagic.FileStorage{Path: filepath.Join(t.TempDir(), "acme")}
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	book := func() *holdBook {
		b := newHoldBook(storage, "ca.test-dir", slog.New(slog.DiscardHandler))
		b.now = func() time.Time { return now }
		return b
	}
	first := book()
	if _, held := first.active(ctx, "a.test"); held {
		t.Fatal("a name never refused is held")
	}
	first.record(ctx, "A.test.", caHold{Until: now.Add(time.Hour), At: now, Problem: "rateLimited"})

	second := book()
	if h, held := second.active(ctx, "a.test"); !held || h.Problem != "rateLimited" {
		t.Fatalf("after a restart: held = %v (%+v), want the stored hold", held, h)
	}
	if _, held := second.active(ctx, "b.test"); held {
		t.Error("a hold on a.test holds b.test")
	}
	other := newHoldBook(storage, "another-ca", slog.New(slog.DiscardHandler))
	if _, held := other.active(ctx, "a.test"); held {
		t.Error("a hold from one CA holds another CA")
	}
	now = now.Add(time.Hour)
	if _, held := second.active(ctx, "a.test"); held {
		t.Error("the hold is still active at its end")
	}
	second.clear(ctx, "a.test")
	if storage.Exists(ctx, second.key("a.test")) {
		t.Error("the hold is still in storage after clear")
	}
	if _, ok := second.cached("a.test"); ok {
		t.Error("the hold is still in memory after clear")
	}
}
