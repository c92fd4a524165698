package acme

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// rateLimitedCA is a minimal ACME server (RFC 8555) that creates accounts
// but refuses every new order with a rateLimited problem and a Retry-After
// of an hour, as Let's Encrypt does. It checks no signatures: it only
// counts what the client asks.
type rateLimitedCA struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests map[string]int // by path; guarded by mu
}

const rateLimitedDetail = "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, " +
	"retry after 2099-01-01 00:00:00 UTC: see https://letsencrypt.org/docs/rate-limits/"

func startRateLimitedCA(t *testing.T) *rateLimitedCA {
	t.Helper()
	ca := &rateLimitedCA{requests: make(map[string]int)}
	ca.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ca.mu.Lock()
		ca.requests[r.URL.Path]++
		n := ca.requests["/nonce"] + ca.requests["/new-account"] + ca.requests["/new-order"]
		ca.mu.Unlock()
		base := "https://" + r.Host
		w.Header().Set("Replay-Nonce", fmt.Sprintf("nonce-%d", n))
		switch r.URL.Path {
		case "/dir":
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]string{
				"newNonce": base + "/nonce", "newAccount": base + "/new-account", "newOrder": base + "/new-order",
				"revokeCert": base + "/revoke", "keyChange": base + "/key-change",
			})
		case "/nonce":
			w.WriteHeader(http.StatusOK)
		case "/new-account":
			w.Header().Set("Location", base+"/account/1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(map[string]any{"status": "valid", "orders": base + "/account/1/orders"})
		case "/new-order":
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
			json.NewEncoder(w).Encode(map[string]any{
				"type": "urn:ietf:params:acme:error:rateLimited", "status": 429, "detail": rateLimitedDetail,
			})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(ca.srv.Close)
	return ca
}

func (ca *rateLimitedCA) count(path string) int {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.requests[path]
}

// rootFile writes the server's certificate as a CA root PEM file.
func (ca *rateLimitedCA) rootFile(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestRateLimitedOrderIsNotRepeated: a CA that answers the order with
// rateLimited gets one order, not a stream of them: the failure is in
// Status and the log with the CA's words, the next attempt is the
// engine's backoff (a minute on), and in the seconds after the refusal,
// with the maintenance loop ticking every 100 ms, no further order
// arrives.
func TestRateLimitedOrderIsNotRepeated(t *testing.T) {
	ca := startRateLimitedCA(t)
	var logs syncBuffer
	m, err := New(Options{
		Domains: []string{"a.test"}, Storage: filepath.Join(t.TempDir(), "acme"), CA: ca.srv.URL + "/dir",
		CARoot: ca.rootFile(t), Challenges: []string{TLSALPN01}, RenewCheckInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Start(ctx, "127.0.0.1:8443", ""); err != nil {
		t.Fatal(err)
	}
	st := waitStatus(t, m, &logs, "the rate-limited order in Status", 20*time.Second, func(s NameStatus) bool { return s.LastError != "" })
	if !strings.Contains(st.LastError, "rateLimited") || !strings.Contains(st.LastError, "retry after 2099-01-01") {
		t.Errorf("last error = %q, want the CA's rateLimited problem", st.LastError)
	}
	if d := st.NextAttempt.Sub(st.LastErrorAt); d < time.Minute {
		t.Errorf("next attempt %v after the refusal, want at least the engine's first backoff (1m)", d)
	}
	// A bounded window: long enough for dozens of maintenance ticks and
	// any immediate retry, far shorter than the engine's first backoff.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if n := ca.count("/new-order"); n != 1 {
			t.Fatalf("the CA got %d orders within seconds of refusing the first as rate limited, want 1\nlog:\n%s", n, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := ca.count("/new-account"); n != 1 {
		t.Errorf("the CA got %d account registrations, want 1", n)
	}
}
