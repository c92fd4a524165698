package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// namedApp answers every request with its name and the body it got.
func namedApp(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, name+" "+string(b))
	}))
	t.Cleanup(s.Close)
	return s
}

func newMultiProxy(t *testing.T, addrs ...string) (*Proxy, *metrics.Set) {
	t.Helper()
	p, set := newTestProxy(t, addrs[0], func(o *Options) { o.Upstreams = addrs })
	return p, set
}

// serve sends one request through p and returns the status and body.
func serve(p *Proxy, method, body string) (int, string) {
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, "http://site.example/", nil)
	} else {
		r = httptest.NewRequest(method, "http://site.example/", strings.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
	}
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, r)
	return rec.Code, rec.Body.String()
}

func gauge(set *metrics.Set, name string) float64 {
	var b bytes.Buffer
	set.WritePrometheus(&b)
	for line := range strings.Lines(b.String()) {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			if _, err := fmt.Sscan(strings.TrimSpace(rest), &v); err == nil {
				return v
			}
		}
	}
	return -1
}

func TestSeveralAddressesTakeTurns(t *testing.T) {
	a, b := namedApp(t, "A"), namedApp(t, "B")
	p, _ := newMultiProxy(t, hostOf(a), hostOf(b))
	got := map[string]int{}
	for range 10 {
		code, body := serve(p, "GET", "")
		if code != 200 {
			t.Fatalf("status %d (%q), want 200", code, body)
		}
		got[strings.TrimSpace(body)]++
	}
	if got["A"] != 5 || got["B"] != 5 {
		t.Errorf("answers by address %v, want 5 each", got)
	}
}

// TestFailedAddressLeftOutAndRequestsFailOver: an address that refuses
// costs no request an error: the one that found it refusing goes to the next
// address, whatever its method, and the address is then left out until
// downFor has passed, when a request tries it again.
func TestFailedAddressLeftOutAndRequestsFailOver(t *testing.T) {
	a, c := namedApp(t, "A"), namedApp(t, "C")
	dead := closedPort(t)
	p, set := newMultiProxy(t, hostOf(a), dead, hostOf(c))
	for i := range 12 {
		method, body := "GET", ""
		if i%2 == 1 {
			method, body = "POST", "payload"
		}
		code, got := serve(p, method, body)
		if code != 200 || !strings.HasSuffix(got, " "+body) {
			t.Fatalf("request %d (%s): status %d, body %q; want 200 from a live address with the body", i, method, code, got)
		}
	}
	if n := set.GetOrCreateCounter("bulwark_upstream_down_total").Get(); n != 1 {
		t.Errorf("down_total = %d, want 1: the dead address is tried once, then left out", n)
	}
	if n := set.GetOrCreateCounter("bulwark_upstream_failovers_total").Get(); n != 1 {
		t.Errorf("failovers_total = %d, want 1", n)
	}
	if v := gauge(set, `bulwark_upstream_up{address="`+dead+`"}`); v != 0 {
		t.Errorf("up gauge of the dead address = %v, want 0", v)
	}
	if v := gauge(set, `bulwark_upstream_up{address="`+hostOf(a)+`"}`); v != 1 {
		t.Errorf("up gauge of a live address = %v, want 1", v)
	}

	// Time passes: the dead address is tried again, and failed over again.
	p.targets.Load().byKey(dead).downUntil.Store(time.Now().Add(-time.Second).UnixNano())
	for range 3 {
		if code, got := serve(p, "GET", ""); code != 200 {
			t.Fatalf("after downFor: status %d (%q), want 200", code, got)
		}
	}
	if n := set.GetOrCreateCounter("bulwark_upstream_down_total").Get(); n != 2 {
		t.Errorf("down_total after downFor = %d, want 2: the address is checked again by a request", n)
	}
}

func TestAllAddressesRefusing502(t *testing.T) {
	p, set := newMultiProxy(t, closedPort(t), closedPort(t))
	for range 3 {
		if code, _ := serve(p, "GET", ""); code != http.StatusBadGateway {
			t.Errorf("status %d, want 502 when no address connects", code)
		}
	}
	if n := set.GetOrCreateCounter(`bulwark_upstream_errors_total{kind="connect"}`).Get(); n != 3 {
		t.Errorf("connect errors = %d, want 3 (one per request)", n)
	}
}

// TestFailoverNeedsReplayableBody: a body that cannot be had again (no
// GetBody: request spooling off) is not sent elsewhere; the client gets the
// 502 of the failed connect.
func TestFailoverNeedsReplayableBody(t *testing.T) {
	a := namedApp(t, "A")
	dead := closedPort(t)
	p, _ := newMultiProxy(t, dead, hostOf(a))
	r := httptest.NewRequest("POST", "http://site.example/", strings.NewReader("once"))
	rec := httptest.NewRecorder()
	p.targets.Load().next.Store(uint64(len(p.targets.Load().list)) - 1) // the dead address is next
	p.ServeHTTP(rec, r)
	if rec.Code != http.StatusBadGateway {
		t.Errorf("status %d (%q), want 502", rec.Code, rec.Body.String())
	}
}

func TestSetUpstreamSeveralAndBack(t *testing.T) {
	a, b := namedApp(t, "A"), namedApp(t, "B")
	p, set := newTestProxy(t, hostOf(a), nil)
	if v := gauge(set, `bulwark_upstream_up{address="`+hostOf(a)+`"}`); v != -1 {
		t.Errorf("one address has an up gauge (%v); want none", v)
	}
	if err := p.SetUpstream(hostOf(a), hostOf(b)); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 4 {
		_, body := serve(p, "GET", "")
		seen[strings.TrimSpace(body)] = true
	}
	if !seen["A"] || !seen["B"] {
		t.Errorf("after SetUpstream(A, B) answers came from %v, want both", seen)
	}
	if v := gauge(set, `bulwark_upstream_up{address="`+hostOf(b)+`"}`); v != 1 {
		t.Errorf("up gauge of B = %v, want 1", v)
	}
	if err := p.SetUpstream(hostOf(a), hostOf(a)); err == nil {
		t.Error("SetUpstream with an address twice = nil, want an error")
	}
	if err := p.SetUpstream(hostOf(b)); err != nil {
		t.Fatal(err)
	}
	if _, body := serve(p, "GET", ""); strings.TrimSpace(body) != "B" {
		t.Errorf("after SetUpstream(B): answer %q, want B", body)
	}
	if v := gauge(set, `bulwark_upstream_up{address="`+hostOf(a)+`"}`); v != -1 {
		t.Errorf("A's up gauge is still exported (%v) after it was removed", v)
	}
}

func TestConnectTimeoutFailsOver(t *testing.T) {
	a := namedApp(t, "A")
	silent := blackholeAddr(t)
	p, set := newTestProxy(t, silent, func(o *Options) {
		o.Upstreams = []string{silent, hostOf(a)}
		o.ConnectTimeout = 200 * time.Millisecond
	})
	p.targets.Load().next.Store(1) // the silent address is next
	if code, body := serve(p, "GET", ""); code != 200 || strings.TrimSpace(body) != "A" {
		t.Errorf("status %d, body %q; want 200 from A after the connect timed out", code, body)
	}
	if n := set.GetOrCreateCounter("bulwark_upstream_down_total").Get(); n != 1 {
		t.Errorf("down_total = %d, want 1", n)
	}
}

// TestUpGaugeOfAnOddSocketPath: a socket path with a quote or a backslash
// makes a valid series name (an invalid one would panic in the metrics set).
func TestUpGaugeOfAnOddSocketPath(t *testing.T) {
	a := namedApp(t, "A")
	odd := `/tmp/a "b"\c.sock`
	_, set := newMultiProxy(t, hostOf(a), "unix:"+odd)
	if v := gauge(set, `bulwark_upstream_up{address="unix:/tmp/a \"b\"\\c.sock"}`); v != 1 {
		t.Errorf("up gauge of %q = %v, want 1", odd, v)
	}
}
