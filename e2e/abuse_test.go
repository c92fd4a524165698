package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestOneClientCannotTakeTheBoxDown is issue 14's acceptance test. Bulwark
// runs with the low profile (a 512 MB box) and its default limits in front
// of uvicorn. An attacker on 127.0.0.1 runs each attack in turn: 3000 idle
// TLS connections; 240 HTTP/2 connections × 100 open POST streams; a
// 20 000-stream rapid reset; slowloris. Meanwhile a normal client on
// 127.0.0.2 makes a request every 50 ms, and every one must get 200 within
// 1 s; Bulwark's RSS must stay under its memory limit, its descriptors
// below RLIMIT_NOFILE, and /status must answer throughout.
func TestOneClientCannotTakeTheBoxDown(t *testing.T) {
	requireUvicorn(t)
	if testing.Short() {
		t.Skip("skipped in -short: a minute of attacks")
	}
	bin := buildWithoutRace(t)
	up, _ := startUvicorn(t)
	in := startBulwarkBin(t, bin, `profile = "low"
`+withUpstream(up, ""), []string{"BULWARK_LIMITS_RATE_PER_IP=", "BULWARK_LOG_ACCESS=off"}) // "": the profile's rate
	const memLimit = 48 << 20 // memory.limit "auto" of the low profile

	mon := startMonitor(t, in)
	normal := startNormalClient(t, in)

	attacks := []struct {
		name string
		run  func(t *testing.T, in *instance)
	}{
		{"3000 idle TLS connections", idleConnections},
		{"240 connections × 100 open POST streams", openPostStreams},
		{"rapid reset of 20000 streams", rapidReset},
		{"slowloris", slowloris},
	}
	for _, a := range attacks {
		before := normal.snapshot()
		mb := mon.snapshot()
		start := time.Now()
		a.run(t, in)
		// The attack's aftermath is its own: wait (up to 30 s) until
		// Bulwark is at rest again before the next one.
		settled := waitQuiet(in, 30*time.Second)
		after := normal.snapshot()
		ma := mon.snapshot()
		t.Logf("%s (%.1fs): normal client %d requests, %d failed; max RSS %.1f MiB, max fds %d of %d; /status failures %d",
			a.name, time.Since(start).Seconds(), after.requests-before.requests, after.failed-before.failed,
			float64(ma.maxRSS)/(1<<20), ma.maxFDs, ma.fdLimit, ma.statusFailed-mb.statusFailed)
		t.Logf("%s: peaks so far %v; at rest again: %v; failures by kind: %v", a.name, ma.maxSeries, settled, after.kinds)
		if n := after.failed - before.failed; n > 0 {
			t.Errorf("%s: %d of the normal client's requests did not get 200 within 1 s; first: %s", a.name, n, after.firstFailure)
		}
		if ma.statusFailed > mb.statusFailed {
			t.Errorf("%s: /status failed %d times", a.name, ma.statusFailed-mb.statusFailed)
		}
	}
	normal.stop()
	m := mon.stop()
	if m.maxRSS >= memLimit {
		t.Errorf("Bulwark's RSS reached %.1f MiB, over its memory limit of %d MiB", float64(m.maxRSS)/(1<<20), memLimit>>20)
	}
	if m.fdLimit > 0 && m.maxFDs >= m.fdLimit {
		t.Errorf("Bulwark's descriptors reached %d, its limit", m.maxFDs)
	}
	metrics := scrape(t, in.admin)
	for _, k := range []string{`bulwark_rejected_total{reason="max_conns_per_ip"}`, `bulwark_rejected_total{reason="rate_per_ip"}`} {
		t.Logf("%s = %v", k, metrics[k])
		if metrics[k] == 0 {
			t.Errorf("%s = 0, want the attacker's refusals counted", k)
		}
	}
}

// buildWithoutRace builds bulwark without the race detector, whose shadow
// memory would make RSS meaningless.
func buildWithoutRace(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(filepath.Dir(bulwarkBin), "bulwark-norace")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/bulwark").CombinedOutput()
	if err != nil {
		t.Fatalf("building bulwark without -race: %v\n%s", err, out)
	}
	return bin
}

// monitor samples Bulwark's RSS and descriptors and asks /status, every
// 200 ms.
type monitor struct {
	mu     sync.Mutex
	s      monitorStats
	cancel context.CancelFunc
	done   chan struct{}
}

type monitorStats struct {
	maxSeries    map[string]float64 // the largest value of each series in peakSeries
	maxRSS       int64
	maxFDs       int
	fdLimit      int
	statusFailed int
}

func startMonitor(t *testing.T, in *instance) *monitor {
	pid := in.cmd.Process.Pid
	ctx, cancel := context.WithCancel(context.Background())
	m := &monitor{cancel: cancel, done: make(chan struct{})}
	m.s.fdLimit = fdLimitOf(pid)
	m.s.maxSeries = map[string]float64{}
	admin := &http.Client{Timeout: 2 * time.Second}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			rss, _ := rssOf(pid)
			fds := fdsOf(pid)
			ok := false
			series := scrapeQuiet(admin, in.admin)
			if res, err := admin.Get("http://" + in.admin + "/status"); err == nil {
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				ok = res.StatusCode == 200
			}
			m.mu.Lock()
			m.s.maxRSS = max(m.s.maxRSS, rss)
			m.s.maxFDs = max(m.s.maxFDs, fds)
			for _, k := range peakSeries {
				m.s.maxSeries[k] = max(m.s.maxSeries[k], series[k])
			}
			if !ok {
				m.s.statusFailed++
			}
			m.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { m.stop() })
	return m
}

func (m *monitor) snapshot() monitorStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.s
	s.maxSeries = maps.Clone(m.s.maxSeries)
	return s
}

// peakSeries are the series whose largest value the test reports, to say
// where memory went.
var peakSeries = []string{
	"go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes",
	"bulwark_h2_streams_active", "bulwark_in_flight", "bulwark_memory_pressure",
	`bulwark_client_connections{proto="h2",state="active"}`,
}

// scrapeQuiet is scrape for a goroutine: nil when /metrics does not answer.
func scrapeQuiet(c *http.Client, admin string) map[string]float64 {
	res, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	m := map[string]float64{}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

func (m *monitor) stop() monitorStats {
	m.cancel()
	<-m.done
	return m.snapshot()
}

func fdsOf(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	return len(ents)
}

func fdLimitOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}

// normalClient makes a request from 127.0.0.2 every 50 ms.
type normalClient struct {
	mu     sync.Mutex
	s      normalStats
	cancel context.CancelFunc
	done   chan struct{}
}

type normalStats struct {
	requests, failed int
	firstFailure     string
	kinds            map[string]int // failures by kind: timeout, 503 memory, ...
}

func startNormalClient(t *testing.T, in *instance) *normalClient {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: time.Second}
	tr := &http.Transport{
		DialContext:     d.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: in.roots, ServerName: "localhost"},
	}
	c := &http.Client{Transport: tr, Timeout: time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	n := &normalClient{cancel: cancel, done: make(chan struct{})}
	n.s.kinds = map[string]int{}
	go func() {
		defer close(n.done)
		defer tr.CloseIdleConnections()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			start := time.Now()
			res, err := c.Get(in.url("/"))
			what, kind := "", ""
			switch {
			case err != nil:
				what, kind = err.Error(), "error"
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					kind = "timeout"
				}
			default:
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					kind = fmt.Sprintf("%d %s", res.StatusCode, res.Header.Get("X-Bulwark-Error"))
					what = "status " + kind
				}
			}
			n.mu.Lock()
			n.s.requests++
			if what != "" {
				n.s.kinds[kind]++
				n.s.failed++
				if n.s.firstFailure == "" {
					n.s.firstFailure = fmt.Sprintf("%s after %v at %s", what, time.Since(start).Round(time.Millisecond), start.Format("15:04:05.000"))
				}
			}
			n.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { n.stop() })
	return n
}

func (n *normalClient) snapshot() normalStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.s
	s.kinds = maps.Clone(n.s.kinds)
	return s
}

// waitQuiet waits up to d until Bulwark holds no HTTP/2 stream, no request
// in flight and no memory pressure, and says whether it got there.
func waitQuiet(in *instance, d time.Duration) bool {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		m := scrapeQuiet(c, in.admin)
		if m != nil && m["bulwark_h2_streams_active"] == 0 && m["bulwark_in_flight"] == 0 && m["bulwark_memory_pressure"] == 0 {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

func (n *normalClient) stop() {
	n.cancel()
	<-n.done
}

// attackerTLS dials Bulwark from 127.0.0.1 with ALPN proto.
func attackerTLS(in *instance, proto string) (*tls.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}, Timeout: 5 * time.Second}
	return tls.DialWithDialer(d, "tcp", in.https, &tls.Config{RootCAs: in.roots, ServerName: "localhost", NextProtos: []string{proto}})
}

// parallel runs f(i) for i in [0, n) on workers goroutines.
func parallel(n, workers int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

// idleConnections opens 3000 TLS connections and holds those it gets for
// 3 s.
func idleConnections(t *testing.T, in *instance) {
	var mu sync.Mutex
	var held []net.Conn
	refused := 0
	parallel(3000, 32, func(int) {
		c, err := attackerTLS(in, "http/1.1")
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			refused++
			return
		}
		held = append(held, c)
	})
	t.Logf("idle connections: %d held, %d refused", len(held), refused)
	time.Sleep(3 * time.Second) // the normal client keeps going meanwhile
	for _, c := range held {
		c.Close()
	}
}

// h2Attacker is one HTTP/2 connection of the attacker, its frames read
// and dropped in the background.
type h2Attacker struct {
	c   *tls.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

func dialH2(in *instance) (*h2Attacker, error) {
	c, err := attackerTLS(in, "h2")
	if err != nil {
		return nil, err
	}
	if c.ConnectionState().NegotiatedProtocol != "h2" {
		c.Close()
		return nil, fmt.Errorf("ALPN chose %q", c.ConnectionState().NegotiatedProtocol)
	}
	a := &h2Attacker{c: c}
	a.fr = http2.NewFramer(c, nil) // reads go to io.Discard below
	a.enc = hpack.NewEncoder(&a.buf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		c.Close()
		return nil, err
	}
	if err := a.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}); err != nil {
		c.Close()
		return nil, err
	}
	go io.Copy(io.Discard, c)
	return a, nil
}

func (a *h2Attacker) headers(id uint32, method, path string, extra ...string) error {
	a.buf.Reset()
	fields := append([]string{":method", method, ":scheme", "https", ":authority", "localhost", ":path", path}, extra...)
	for i := 0; i+1 < len(fields); i += 2 {
		a.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return a.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: id, BlockFragment: a.buf.Bytes(), EndHeaders: true, EndStream: method == "GET",
	})
}

// openPostStreams opens 240 HTTP/2 connections, each with 100 POST
// streams that send one byte of a 1 MB body and wait, for 5 s.
func openPostStreams(t *testing.T, in *instance) {
	var mu sync.Mutex
	var conns []*h2Attacker
	failed, streams := 0, 0
	parallel(240, 16, func(int) {
		a, err := dialH2(in)
		if err != nil {
			mu.Lock()
			failed++
			mu.Unlock()
			return
		}
		a.c.SetWriteDeadline(time.Now().Add(20 * time.Second))
		n := 0
		for s := range 100 {
			id := uint32(2*s + 1)
			if a.headers(id, "POST", "/upload", "content-length", "1000000") != nil || a.fr.WriteData(id, false, []byte("x")) != nil {
				break
			}
			n++
		}
		mu.Lock()
		conns = append(conns, a)
		streams += n
		mu.Unlock()
	})
	t.Logf("open POST streams: %d connections (%d refused), %d streams sent", len(conns), failed, streams)
	time.Sleep(5 * time.Second)
	for _, a := range conns {
		a.c.Close()
	}
}

// rapidReset sends 20000 HEADERS + RST_STREAM pairs on one connection
// (CVE-2023-44487).
func rapidReset(t *testing.T, in *instance) {
	a, err := dialH2(in)
	if err != nil {
		t.Errorf("rapid reset: dial: %v", err)
		return
	}
	defer a.c.Close()
	a.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	sent := 0
	for s := range 20000 {
		id := uint32(2*s + 1)
		if a.headers(id, "GET", "/") != nil || a.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break
		}
		sent++
	}
	t.Logf("rapid reset: %d of 20000 pairs sent", sent)
}

// slowloris opens 200 connections that send a request head one header
// line a second, for 12 s (read_header_timeout is 10 s).
func slowloris(t *testing.T, in *instance) {
	var wg sync.WaitGroup
	var opened, cut atomic.Int64
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := attackerTLS(in, "http/1.1")
			if err != nil {
				return
			}
			defer c.Close()
			opened.Add(1)
			c.SetWriteDeadline(time.Now().Add(15 * time.Second))
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n"); err != nil {
				return
			}
			for i := range 12 {
				time.Sleep(time.Second)
				if _, err := fmt.Fprintf(c, "X-Slow-%d: a\r\n", i); err != nil {
					cut.Add(1)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("slowloris: %d connections opened, %d cut off before 12 s", opened.Load(), cut.Load())
}
