package limit

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// fakeConn is a connection from addr that records its Close calls.
type fakeConn struct {
	net.Conn
	addr   net.Addr
	closes int
}

func (f *fakeConn) RemoteAddr() net.Addr { return f.addr }
func (f *fakeConn) Close() error         { f.closes++; return nil }

func from(ip string) *fakeConn {
	return &fakeConn{addr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 40000))}
}

func counter(set *metrics.Set, reason string) uint64 {
	return set.GetOrCreateCounter(rejectedName(reason)).Get()
}

// noFDs turns the descriptor reserve off, for tests of the caps alone.
func noFDs(o ConnsOptions) ConnsOptions { o.FDReserve = -1; return o }

func TestConnsPerIP(t *testing.T) {
	set := metrics.NewSet()
	c := NewConns(noFDs(ConnsOptions{PerIP: 2, Metrics: set}))
	a1, _ := c.Accept(from("127.0.0.1"))
	a2, _ := c.Accept(from("127.0.0.1"))
	if a1 == nil || a2 == nil {
		t.Fatal("the first two connections of 127.0.0.1 were refused")
	}
	third := from("127.0.0.1")
	if got, reason := c.Accept(third); got != nil || reason != ReasonMaxConnsPerIP || third.closes != 1 {
		t.Errorf("third connection of 127.0.0.1: conn %v, reason %q, closed %d times; want nil, %q, 1", got, reason, third.closes, ReasonMaxConnsPerIP)
	}
	if got, _ := c.Accept(from("127.0.0.2")); got == nil {
		t.Error("127.0.0.2 was refused: the cap is per address")
	}
	if n := counter(set, ReasonMaxConnsPerIP); n != 1 {
		t.Errorf("bulwark_rejected_total{reason=max_conns_per_ip} = %d, want 1", n)
	}
	// Closing twice gives one place back, not two.
	a1.Close()
	a1.Close()
	if _, n := c.Open(netip.MustParseAddr("127.0.0.1")); n != 1 {
		t.Errorf("after one close (twice): %d open for 127.0.0.1, want 1", n)
	}
	if got, _ := c.Accept(from("127.0.0.1")); got == nil {
		t.Error("127.0.0.1 refused after one of its connections closed")
	}
	if got, _ := c.Accept(from("127.0.0.1")); got != nil {
		t.Error("127.0.0.1 got a third connection")
	}
}

// TestConnsIPv6PerPrefix: an IPv6 client is counted per /64, so it cannot
// escape the cap by taking a new address for every connection.
func TestConnsIPv6PerPrefix(t *testing.T) {
	c := NewConns(noFDs(ConnsOptions{PerIP: 2}))
	for i, ip := range []string{"2001:db8:0:1::1", "2001:db8:0:1::2"} {
		if got, _ := c.Accept(from(ip)); got == nil {
			t.Fatalf("connection %d from the /64 refused", i)
		}
	}
	if got, reason := c.Accept(from("2001:db8:0:1:ffff::3")); got != nil || reason != ReasonMaxConnsPerIP {
		t.Errorf("third address of one /64: conn %v, reason %q; want refused with %q", got, reason, ReasonMaxConnsPerIP)
	}
	if got, _ := c.Accept(from("2001:db8:0:2::1")); got == nil {
		t.Error("another /64 was refused")
	}
}

func TestConnsMax(t *testing.T) {
	set := metrics.NewSet()
	c := NewConns(noFDs(ConnsOptions{Max: 2, PerIP: 10, Metrics: set}))
	a, _ := c.Accept(from("10.0.0.1"))
	c.Accept(from("10.0.0.2"))
	if got, reason := c.Accept(from("10.0.0.3")); got != nil || reason != ReasonMaxConns {
		t.Errorf("third connection: %v, %q; want refused with %q", got, reason, ReasonMaxConns)
	}
	a.Close()
	if got, _ := c.Accept(from("10.0.0.3")); got == nil {
		t.Error("refused after a connection closed")
	}
	if n := counter(set, ReasonMaxConns); n != 1 {
		t.Errorf("bulwark_rejected_total{reason=max_conns} = %d, want 1", n)
	}
	// A reload lowers the cap for new connections only.
	c.Update(noFDs(ConnsOptions{Max: 1}))
	if got, _ := c.Accept(from("10.0.0.4")); got != nil {
		t.Error("accepted over a lowered cap")
	}
	if all, _ := c.Open(netip.Addr{}); all != 2 {
		t.Errorf("open = %d, want 2", all)
	}
}

// TestConnsExempt: a trusted proxy carries many clients; the per-address
// cap does not apply to it.
func TestConnsExempt(t *testing.T) {
	c := NewConns(noFDs(ConnsOptions{PerIP: 1, Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}))
	for i := range 3 {
		if got, _ := c.Accept(from("10.1.2.3")); got == nil {
			t.Fatalf("connection %d from a trusted proxy refused", i)
		}
	}
	c.Accept(from("192.0.2.1"))
	if got, _ := c.Accept(from("192.0.2.1")); got != nil {
		t.Error("second connection of an untrusted address accepted")
	}
}

// TestConnsFDReserve: new connections are refused once the open
// descriptors reach the limit less the reserve; the descriptors are
// counted once per interval, and connections in between are added.
func TestConnsFDReserve(t *testing.T) {
	set := metrics.NewSet()
	now := time.Unix(1000, 0)
	var counts, others atomic.Int64
	others.Store(80) // descriptors that are not client connections
	var c *Conns
	c = NewConns(ConnsOptions{
		FDLimit:   200, // reserve: max(50, 200/10) = 50, so the ceiling is 150
		FDReserve: 50,
		OpenFDs: func() (int, error) {
			counts.Add(1)
			all, _ := c.Open(netip.Addr{})
			return int(others.Load()) + all + 1, nil // + the connection being admitted
		},
		Metrics: set,
		Now:     func() time.Time { return now },
	})
	var open []net.Conn
	for i := range 100 {
		nc, reason := c.Accept(from("10.0.0.1"))
		if nc == nil {
			if i != 69 || reason != ReasonFDReserve {
				t.Fatalf("connection %d refused (%q); want the 70th refused with %q (80 + 70 = 150)", i+1, reason, ReasonFDReserve)
			}
			break
		}
		open = append(open, nc)
	}
	if len(open) != 69 {
		t.Fatalf("%d connections admitted, want 69", len(open))
	}
	if counts.Load() != 1 {
		t.Errorf("descriptors counted %d times within one interval, want 1", counts.Load())
	}
	// Spool files or app connections take 20 more: seen at the next count.
	others.Store(100)
	for _, nc := range open[:10] {
		nc.Close()
	}
	if nc, _ := c.Accept(from("10.0.0.1")); nc == nil {
		t.Error("refused although 10 connections closed")
	}
	now = now.Add(FDSampleInterval)
	// The accept that finds the count due is judged by the old count, and
	// starts a new one off the accept path.
	if nc, reason := c.Accept(from("10.0.0.1")); nc == nil {
		t.Fatalf("the accept that starts a recount was refused (%q); want it judged by the old count", reason)
	}
	deadline := time.Now().Add(5 * time.Second)
	for counts.Load() < 2 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if n := counts.Load(); n != 2 {
		t.Fatalf("descriptors counted %d times, want 2", n)
	}
	// Wait for the count's result to land (it is stored under the lock
	// right after OpenFDs returns), then 100 others + 61 clients is over.
	var nc net.Conn
	var reason string
	for time.Now().Before(deadline) {
		if nc, reason = c.Accept(from("10.0.0.1")); nc == nil {
			break
		}
		nc.Close()
	}
	if nc != nil || reason != ReasonFDReserve {
		t.Errorf("after a new count of 100 other descriptors + 61 clients: %v, %q; want refused", nc, reason)
	}
	if n := counter(set, ReasonFDReserve); n != 2 {
		t.Errorf("bulwark_rejected_total{reason=fd_reserve} = %d, want 2", n)
	}
}

// TestConnsFDCountFails: without a count, only client connections are
// counted against the ceiling.
func TestConnsFDCountFails(t *testing.T) {
	c := NewConns(ConnsOptions{FDLimit: 20, FDReserve: 10, OpenFDs: func() (int, error) { return 0, errors.New("no /proc") }})
	n := 0
	for range 20 {
		if nc, _ := c.Accept(from("10.0.0.1")); nc != nil {
			n++
		}
	}
	if n != 9 { // ceiling 10, the connection being admitted counted
		t.Errorf("%d admitted with a ceiling of 10 descriptors, want 9", n)
	}
}

func TestCountOpenFDs(t *testing.T) {
	before, err := countOpenFDs()
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	after, _ := countOpenFDs()
	if after != before+1 {
		t.Errorf("open descriptors %d after a listen, %d before; want one more", after, before)
	}
	if fdLimit() <= 0 {
		t.Error("fdLimit() <= 0 on Linux")
	}
}

func TestRejectedSeriesNames(t *testing.T) {
	set := metrics.NewSet()
	NewConns(ConnsOptions{Metrics: set})
	NewRates(RateOptions{Metrics: set})
	var b strings.Builder
	set.WritePrometheus(&b)
	for _, r := range []string{ReasonMaxConns, ReasonMaxConnsPerIP, ReasonFDReserve, ReasonRate} {
		if want := `bulwark_rejected_total{reason="` + r + `"} 0`; !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, b.String())
		}
	}
}

// TestConnKeepsTCPMethods: code that shuts a TCP connection's sending side
// (a lingering close) or sets SO_LINGER still can through the wrapper.
func TestConnKeepsTCPMethods(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := NewConns(noFDs(ConnsOptions{}))
	nc, _ := c.Accept(raw)
	defer nc.Close()
	if _, ok := nc.(interface{ NetConn() net.Conn }).NetConn().(*net.TCPConn); !ok {
		t.Error("NetConn does not return the *net.TCPConn")
	}
	if err := nc.(interface{ SetLinger(int) error }).SetLinger(5); err != nil {
		t.Errorf("SetLinger: %v", err)
	}
	if err := nc.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("client read after CloseWrite: %d, %v; want EOF", n, err)
	}
}
