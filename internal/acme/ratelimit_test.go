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

// refusingCA is a minimal ACME server (RFC 8555) that creates accounts
// but refuses every new order with one problem: by default rateLimited
// with a Retry-After of an hour, as Let's Encrypt does. It checks no
// signatures: it only counts what the client asks.
type refusingCA struct {
	srv     *httptest.Server
	problem map[string]any

	mu       sync.Mutex
	requests map[string]int // by path; guarded by mu
}

const rateLimitedDetail = "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, " +
	"retry after 2099-01-01 00:00:00 UTC: see https://letsencrypt.org/docs/rate-limits/"

func startRateLimitedCA(t *testing.T) *refusingCA {
	return startRefusingCA(t, map[string]any{
		"type": "urn:ietf:params:acme:error:rateLimited", "status": 429, "detail": rateLimitedDetail,
	})
}

func startRefusingCA(t *testing.T, problem map[string]any) *refusingCA {
	t.Helper()
	ca := &refusingCA{problem: problem, requests: make(map[string]int)}
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
			status := ca.problem["status"].(int)
			if status == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "3600")
			}
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(ca.problem)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(ca.srv.Close)
	return ca
}

func (ca *refusingCA) count(path string) int {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.requests[path]
}

// rootFile writes the server's certificate as a CA root PEM file.
func (ca *refusingCA) rootFile(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// startAgainst starts a Manager for a.test on storage against ca, with
// the maintenance loop ticking every 100 ms; it stops with the test.
func startAgainst(t *testing.T, ca *refusingCA, storage string, logs *syncBuffer) (*Manager, context.CancelFunc) {
	t.Helper()
	m, err := New(Options{
		Domains: []string{"a.test"}, Storage: storage, CA: ca.srv.URL + "/dir",
		CARoot: ca.rootFile(t), Challenges: []string{TLSALPN01}, RenewCheckInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := m.Start(ctx, "127.0.0.1:8443", ""); err != nil {
		t.Fatal(err)
	}
	return m, cancel
}

// TestRateLimitedOrderIsNotRepeated: a CA that answers the order with
// rateLimited gets one order, not a stream of them: the failure is in
// Status and the log with the CA's words, the next attempt is the CA's
// time (capped at a week), and in the seconds after the refusal, with
// the maintenance loop ticking every 100 ms, no further order arrives.
func TestRateLimitedOrderIsNotRepeated(t *testing.T) {
	ca := startRateLimitedCA(t)
	var logs syncBuffer
	m, _ := startAgainst(t, ca, filepath.Join(t.TempDir(), "acme"), &logs)
	st := waitStatus(t, m, &logs, "the rate-limited order in Status", 20*time.Second, func(s NameStatus) bool { return s.LastError != "" })
	if !strings.Contains(st.LastError, "rateLimited") || !strings.Contains(st.LastError, "retry after 2099-01-01") {
		t.Errorf("last error = %q, want the CA's rateLimited problem", st.LastError)
	}
	if d := st.NextAttempt.Sub(st.LastErrorAt); d < longestHold-time.Minute || d > longestHold+time.Minute {
		t.Errorf("next attempt %v after the refusal, want the CA's time capped at %v", d, longestHold)
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

// TestRateLimitHoldOutlivesTheProcess: the engine itself would retry a
// minute after a rateLimited refusal, and a new process (a restart, an
// upgrade, a second instance on the same storage) would order at once.
// The hold in storage stops both: the second Manager refuses its own
// attempt before any request, and shows the CA's refusal in Status. The
// control case, a CA refusing for another reason, shows the second
// Manager does order at once, so the first case can fail.
func TestRateLimitHoldOutlivesTheProcess(t *testing.T) {
	for _, tc := range []struct {
		name      string
		problem   map[string]any
		wantHeld  bool
		wantOrder int // orders the CA sees once the second Manager has tried
	}{
		{"rateLimited", map[string]any{
			"type": "urn:ietf:params:acme:error:rateLimited", "status": 429, "detail": rateLimitedDetail,
		}, true, 1},
		{"rejectedIdentifier", map[string]any{
			"type": "urn:ietf:params:acme:error:rejectedIdentifier", "status": 400, "detail": "a.test is not allowed",
		}, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := startRefusingCA(t, tc.problem)
			storage := filepath.Join(t.TempDir(), "acme")
			var logs1, logs2 syncBuffer
			first, stop := startAgainst(t, ca, storage, &logs1)
			waitStatus(t, first, &logs1, "the first refusal", 20*time.Second, func(s NameStatus) bool { return s.LastError != "" })
			stop()

			second, _ := startAgainst(t, ca, storage, &logs2)
			deadline := time.Now().Add(20 * time.Second)
			for {
				tried := strings.Contains(logs2.String(), "not asking the CA yet") || ca.count("/new-order") >= 2
				if tried {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the second Manager made no attempt in 20 s\nlog:\n%s", logs2.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
			if n := ca.count("/new-order"); n != tc.wantOrder {
				t.Errorf("the CA got %d orders, want %d\nsecond log:\n%s", n, tc.wantOrder, logs2.String())
			}
			if !tc.wantHeld {
				return
			}
			st := second.Status()[0]
			if !strings.Contains(st.LastError, "retry after 2099-01-01") {
				t.Errorf("second Manager's last error = %q, want the CA's refusal from storage", st.LastError)
			}
			if d := time.Until(st.NextAttempt); d < longestHold-time.Hour {
				t.Errorf("second Manager's next attempt in %v, want the held time (about %v)", d, longestHold)
			}
		})
	}
}
