package limit

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestRatesBurstAndRefill(t *testing.T) {
	clk := &clock{time.Unix(1000, 0)}
	r := NewRates(RateOptions{PerSecond: 2, Burst: 3, Now: clk.now})
	a := netip.MustParseAddr("192.0.2.1")
	for i := range 3 {
		if ok, _ := r.Allow(a); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := r.Allow(a)
	if ok || wait != 500*time.Millisecond {
		t.Errorf("fourth request at once: %v, retry after %v; want refused, 500ms (2/s)", ok, wait)
	}
	if ok, _ := r.Allow(netip.MustParseAddr("192.0.2.2")); !ok {
		t.Error("another address refused: the limit is per address")
	}
	clk.t = clk.t.Add(250 * time.Millisecond)
	if ok, wait := r.Allow(a); ok || wait != 250*time.Millisecond {
		t.Errorf("250ms later: %v, retry after %v; want refused, 250ms", ok, wait)
	}
	clk.t = clk.t.Add(250 * time.Millisecond)
	if ok, _ := r.Allow(a); !ok {
		t.Error("500ms later: refused, want one request allowed")
	}
	// Not an IP (a unix socket peer): no limit.
	for range 10 {
		if ok, _ := r.Allow(netip.Addr{}); !ok {
			t.Fatal("a peer without an address was limited")
		}
	}
}

// TestRatesTableBounded: however many addresses come, the table holds at
// most MaxClients; idle ones (full buckets) go first.
func TestRatesTableBounded(t *testing.T) {
	clk := &clock{time.Unix(1000, 0)}
	r := NewRates(RateOptions{PerSecond: 1, Burst: 2, MaxClients: 64, Now: clk.now})
	for i := range 1000 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		r.Allow(a)
		r.Allow(a) // empties its bucket: not idle
		if n := r.Len(); n > 64 {
			t.Fatalf("after %d addresses the table holds %d, want at most 64", i+1, n)
		}
	}
	// Once the buckets have filled up again, the periodic sweep empties it.
	clk.t = clk.t.Add(sweepInterval)
	r.Allow(netip.MustParseAddr("192.0.2.1"))
	if n := r.Len(); n != 1 {
		t.Errorf("after a sweep: %d clients, want 1", n)
	}
	// A client that is still limited is kept by a sweep.
	hot := netip.MustParseAddr("192.0.2.9")
	r.Allow(hot)
	r.Allow(hot)
	clk.t = clk.t.Add(sweepInterval)
	r.Allow(netip.MustParseAddr("192.0.2.1"))
	if ok, _ := r.Allow(hot); !ok {
		t.Error("hot client refused after a minute: its bucket holds a minute's refill")
	}
}

func TestRatesUpdateResets(t *testing.T) {
	clk := &clock{time.Unix(1000, 0)}
	r := NewRates(RateOptions{PerSecond: 1, Burst: 1, Now: clk.now})
	a := netip.MustParseAddr("192.0.2.1")
	r.Allow(a)
	if ok, _ := r.Allow(a); ok {
		t.Fatal("second request allowed with burst 1")
	}
	r.Update(RateOptions{PerSecond: 1, Burst: 5, Now: clk.now})
	if ok, _ := r.Allow(a); !ok {
		t.Error("refused after a reload raised the burst")
	}
	r.Update(RateOptions{Now: clk.now}) // off
	for range 20 {
		if ok, _ := r.Allow(a); !ok {
			t.Fatal("refused with the limit off")
		}
	}
}

// TestRatesMiddleware429: over its rate a client gets Bulwark's 429 with
// Retry-After, the handler never runs, and the refusal is counted; behind
// a trusted proxy the client is the address X-Forwarded-For names.
func TestRatesMiddleware429(t *testing.T) {
	set := metrics.NewSet()
	clk := &clock{time.Unix(1000, 0)}
	var logs bytes.Buffer
	r := NewRates(RateOptions{
		PerSecond: 0.5, Burst: 2, Now: clk.now, Metrics: set,
		Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	})
	served := 0
	h := r.Middleware(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { served++ }))
	do := func(remote, xff string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/up", strings.NewReader("body"))
		req.RemoteAddr = remote
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for i := range 2 {
		if rec := do("192.0.2.1:5000", ""); rec.Code != 200 {
			t.Fatalf("request %d: %d, want 200", i+1, rec.Code)
		}
	}
	rec := do("192.0.2.1:5001", "")
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "2" ||
		rec.Header().Get("X-Bulwark-Error") != ReasonRate {
		t.Errorf("third request: %d, Retry-After %q, X-Bulwark-Error %q; want 429, 2 (0.5/s), %q",
			rec.Code, rec.Header().Get("Retry-After"), rec.Header().Get("X-Bulwark-Error"), ReasonRate)
	}
	if served != 2 {
		t.Errorf("handler ran %d times, want 2", served)
	}
	// Two clients behind one trusted proxy have a bucket each; the proxy
	// itself is not limited for them.
	for i := range 2 {
		for _, client := range []string{"198.51.100.1", "198.51.100.2"} {
			if rec := do("10.0.0.1:6000", client); rec.Code != 200 {
				t.Errorf("request %d of %s through the trusted proxy: %d, want 200", i+1, client, rec.Code)
			}
		}
	}
	if rec := do("10.0.0.1:6000", "198.51.100.1"); rec.Code != 429 {
		t.Errorf("third request of 198.51.100.1 through the proxy: %d, want 429", rec.Code)
	}
	// An untrusted peer's X-Forwarded-For is not believed: its own bucket
	// (already empty) counts, and the log says why.
	if rec := do("192.0.2.1:5002", "203.0.113.50"); rec.Code != 429 {
		t.Errorf("untrusted peer with a forged X-Forwarded-For: %d, want 429", rec.Code)
	}
	if !strings.Contains(logs.String(), "trusted_proxies") {
		t.Errorf("no hint about trusted_proxies in the log:\n%s", logs.String())
	}
	if n := counter(set, ReasonRate); n != 3 {
		t.Errorf("bulwark_rejected_total{reason=rate_per_ip} = %d, want 3", n)
	}
}

// TestRatesMiddlewareOff: with no rate the handler runs every time.
func TestRatesMiddlewareOff(t *testing.T) {
	r := NewRates(RateOptions{})
	served := 0
	h := r.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served++ }))
	for range 100 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}
	if served != 100 || r.Len() != 0 {
		t.Errorf("served %d, table %d; want 100, 0", served, r.Len())
	}
}

// benchAddrs are 256 client addresses for the benchmarks.
func benchAddrs() []netip.Addr {
	addrs := make([]netip.Addr, 256)
	for i := range addrs {
		addrs[i] = netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", i))
	}
	return addrs
}

func BenchmarkRatesAllow(b *testing.B) {
	r := NewRates(RateOptions{PerSecond: 1e6, Burst: 1e6})
	addrs := benchAddrs()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Allow(addrs[i&255])
		i++
	}
}

// BenchmarkRatesAllowParallel is BenchmarkRatesAllow from every P at once:
// the cost of the table's one lock under contention.
func BenchmarkRatesAllowParallel(b *testing.B) {
	r := NewRates(RateOptions{PerSecond: 1e6, Burst: 1e6})
	addrs := benchAddrs()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Allow(addrs[i&255])
			i++
		}
	})
}
