package spool

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// TestBuffer_ChargedBySegment: the memory budget is charged the memory a
// body holds, which for a one-byte body is its first 512-byte segment. 1000
// of them fit in 1 MiB; charged a 32 KiB chunk each, as before, the 33rd
// went to disk.
func TestBuffer_ChargedBySegment(t *testing.T) {
	const n = 1000
	set := metrics.NewSet()
	s := newTestSpool(t, Options{MemoryBudget: 1 << 20, Metrics: set})
	bufs := make([]*Buffer, n)
	for i := range bufs {
		bufs[i] = s.NewBuffer()
		if _, err := bufs[i].Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := s.Stats(), (Stats{MemoryBytes: n * segMin, ActiveBodies: n}); got != want {
		t.Errorf("Stats() with %d one-byte bodies = %+v, want %+v", n, got, want)
	}
	if got := metricValue(t, set, "bulwark_spool_memory_bytes"); got != n*segMin {
		t.Errorf("bulwark_spool_memory_bytes = %v, want %d", got, n*segMin)
	}
	for i, b := range bufs {
		got, err := io.ReadAll(b.Reader())
		if err != nil || !bytes.Equal(got, []byte{byte(i)}) || b.OnDisk() {
			t.Fatalf("body %d read back %q, %v (on disk %v), want %q from memory", i, got, err, b.OnDisk(), []byte{byte(i)})
		}
		b.Close()
	}
	assertClean(t, s)
}

// TestBuffer_ByteWrites crosses every segment border one byte at a time
// and checks what is held, charged and read back.
func TestBuffer_ByteWrites(t *testing.T) {
	const per = 50 << 10                        // inside the fifth segment
	const held = 512 + 2<<10 + 8<<10 + 2*32<<10 // the five segments
	s := newTestSpool(t, Options{MemoryPerBody: per})
	want := pattern(per + 1000)
	b := s.NewBuffer()
	defer b.Close()
	for i := range want {
		if _, err := b.Write(want[i : i+1]); err != nil {
			t.Fatalf("Write of byte %d: %v", i, err)
		}
	}
	if got, wantSt := s.Stats(), (Stats{MemoryBytes: held, DiskBytes: 1000, ActiveBodies: 1, Files: 1}); got != wantSt {
		t.Errorf("Stats() = %+v, want %+v", got, wantSt)
	}
	// Reads of odd sizes from odd offsets.
	r := b.Reader()
	var got []byte
	p := make([]byte, 777)
	for range 1000 {
		n, err := r.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Errorf("read back %d bytes, differing from the %d written", len(got), len(want))
	}
}

// TestRequests_FileBudget: with MaxFiles temp files open, the next body
// that must spill waits for one (FileWait), or is answered 503 with
// Retry-After (reason spool_fds) when the wait runs out.
func TestRequests_FileBudget(t *testing.T) {
	const maxFiles = 2
	addr := func(i int) string { return fmt.Sprintf("10.1.0.%d:4000", i) }
	t.Run("waits", func(t *testing.T) {
		s := newTestSpool(t, Options{BufferRequests: true, MemoryPerBody: -1, MaxFiles: maxFiles, FileWait: waitLimit})
		next, seenc, _ := recordingNext()
		h := s.Requests(next)
		finish := waitingBodies(t, h, maxFiles, addr)
		if got := s.Stats().Files; got != maxFiles {
			t.Fatalf("Stats().Files = %d with %d bodies on disk, want %d", got, maxFiles, maxFiles)
		}
		rec := httptest.NewRecorder()
		returned := make(chan struct{})
		go func() {
			defer close(returned)
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("0123456789")))
		}()
		if !eventually(func() bool { s.files.mu.Lock(); defer s.files.mu.Unlock(); return len(s.files.waiters) == 1 }) {
			t.Fatalf("the third body is not waiting for a temp file")
		}
		select {
		case <-returned:
			t.Fatalf("the third body was answered %d while the file budget was used up, want it to wait", rec.Code)
		default:
		}
		finish() // the first two bodies end and close their files
		select {
		case <-returned:
		case <-time.After(waitLimit):
			t.Fatalf("the third body still waits after the files were freed")
		}
		// The first two ran next too, with their one byte.
		for range maxFiles + 1 {
			<-seenc
		}
		if rec.Code != http.StatusOK {
			t.Errorf("third body answered %d, want 200 once a file was free", rec.Code)
		}
		assertClean(t, s)
	})
	t.Run("refuses", func(t *testing.T) {
		set := metrics.NewSet()
		s := newTestSpool(t, Options{BufferRequests: true, MemoryPerBody: -1, MaxFiles: maxFiles, FileWait: -1, Metrics: set})
		next, _, calls := recordingNext()
		h := s.Requests(next)
		finish := waitingBodies(t, h, maxFiles, addr)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("0123456789")))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("X-Bulwark-Error") != reasonNoFiles ||
			rec.Header().Get("Retry-After") != "5" {
			t.Errorf("answer = %d %q, Retry-After %q; want 503 %q, 5", rec.Code,
				rec.Header().Get("X-Bulwark-Error"), rec.Header().Get("Retry-After"), reasonNoFiles)
		}
		if got := calls.Load(); got != 0 {
			t.Errorf("next called %d times, want 0", got)
		}
		for _, series := range []string{`bulwark_rejected_total{reason="spool_fds"}`, `bulwark_spool_rejected_total{reason="spool_fds"}`} {
			if got := metricValue(t, set, series); got != 1 {
				t.Errorf("%s = %v, want 1", series, got)
			}
		}
		finish()
		assertClean(t, s)
	})
	t.Run("client leaves while waiting", func(t *testing.T) {
		s := newTestSpool(t, Options{BufferRequests: true, MemoryPerBody: -1, MaxFiles: maxFiles, FileWait: waitLimit})
		next, _, calls := recordingNext()
		h := s.Requests(next)
		finish := waitingBodies(t, h, maxFiles, addr)
		ctx, cancel := context.WithCancel(context.Background())
		returned := make(chan struct{})
		go func() {
			defer close(returned)
			r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/", strings.NewReader("0123456789"))
			h.ServeHTTP(httptest.NewRecorder(), r)
		}()
		if !eventually(func() bool { s.files.mu.Lock(); defer s.files.mu.Unlock(); return len(s.files.waiters) == 1 }) {
			t.Fatalf("the third body is not waiting for a temp file")
		}
		cancel()
		select {
		case <-returned:
		case <-time.After(waitLimit):
			t.Fatalf("a body whose client left still waits for a temp file")
		}
		s.files.mu.Lock()
		waiters := len(s.files.waiters)
		s.files.mu.Unlock()
		if waiters != 0 || calls.Load() != 0 {
			t.Errorf("after the client left: %d waiters, next called %d times; want 0, 0", waiters, calls.Load())
		}
		finish()
		assertClean(t, s)
	})
}

// TestResponses_FileBudget: a response that finds the file budget used up
// is not failed: it is fed to the client in step, as past the disk cap.
func TestResponses_FileBudget(t *testing.T) {
	s := newTestSpool(t, Options{BufferResponses: true, MemoryPerBody: -1, MaxFiles: 1})
	held := s.NewBuffer()
	if _, err := held.Write([]byte("x")); err != nil || !held.OnDisk() {
		t.Fatalf("holding the only temp file: err %v, on disk %v", err, held.OnDisk())
	}
	body := pattern(1 << 20)
	srv, done := serve(t, s.Responses(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	})))
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	waitDone(t, done, "response")
	if resp.StatusCode != http.StatusOK || err != nil || !bytes.Equal(got, body) {
		t.Errorf("answer %d with %d bytes (err %v), want 200 with the %d bytes", resp.StatusCode, len(got), err, len(body))
	}
	if got := s.Stats().Files; got != 1 {
		t.Errorf("Stats().Files = %d, want 1 (the held body's only)", got)
	}
	held.Close()
	assertClean(t, s)
}

// TestRequests_BodiesPerIP: with BodiesPerIP bodies arriving from one
// address, its next body is answered 429 with Retry-After before it is
// read, while another address passes; once one of the bodies is done, the
// first address passes again. Real sockets: 127.0.0.1 and 127.0.0.2.
func TestRequests_BodiesPerIP(t *testing.T) {
	const perIP = 2
	set := metrics.NewSet()
	s := newTestSpool(t, Options{BufferRequests: true, BodiesPerIP: perIP, Metrics: set})
	next, _, calls := recordingNext()
	srv, _ := serve(t, s.Requests(next))
	var conns []net.Conn
	for range perIP {
		c := rawRequest(t, srv, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx")
		conns = append(conns, c)
	}
	if !eventually(func() bool { return s.Stats().MemoryBytes == perIP*segMin }) {
		t.Fatalf("Stats() = %+v, want the %d waiting bodies' bytes held", s.Stats(), perIP)
	}
	post := func(local string) *http.Response {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		defer c.CloseIdleConnections()
		resp, err := c.Post(srv.URL, "application/octet-stream", strings.NewReader("0123456789"))
		if err != nil {
			t.Fatalf("POST from %s: %v", local, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	resp := post("127.0.0.1")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("X-Bulwark-Error") != reasonPerIP ||
		resp.Header.Get("Retry-After") != "1" {
		t.Errorf("body %d from 127.0.0.1: %d %q, Retry-After %q; want 429 %q, 1", perIP+1, resp.StatusCode,
			resp.Header.Get("X-Bulwark-Error"), resp.Header.Get("Retry-After"), reasonPerIP)
	}
	if got := calls.Load(); got != 0 {
		t.Errorf("next called %d times, want 0", got)
	}
	if resp := post("127.0.0.2"); resp.StatusCode != http.StatusOK {
		t.Errorf("body from 127.0.0.2: %d, want 200", resp.StatusCode)
	}
	for _, series := range []string{`bulwark_rejected_total{reason="bodies_per_ip"}`, `bulwark_spool_rejected_total{reason="bodies_per_ip"}`} {
		if got := metricValue(t, set, series); got != 1 {
			t.Errorf("%s = %v, want 1", series, got)
		}
	}
	conns[0].Close() // that body fails; it counts no more
	if !eventually(func() bool { return s.Stats().ActiveBodies == perIP-1 }) {
		t.Fatalf("Stats() = %+v after a client left, want %d active body", s.Stats(), perIP-1)
	}
	if resp := post("127.0.0.1"); resp.StatusCode != http.StatusOK {
		t.Errorf("body from 127.0.0.1 after one of its bodies ended: %d, want 200", resp.StatusCode)
	}
}

// TestFileBudget_Order: freed files go to waiters in arrival order, and a
// raised limit lets them on at once.
func TestFileBudget_Order(t *testing.T) {
	var fb fileBudget
	if !fb.acquire(1, 0, nil) || fb.acquire(1, 0, nil) {
		t.Fatalf("acquire with limit 1: want the first to succeed and the second, not waiting, to fail")
	}
	got := make(chan int, 2)
	for i := range 2 {
		go func() {
			if fb.acquire(1, waitLimit, nil) {
				got <- i
			}
		}()
		if !eventually(func() bool { fb.mu.Lock(); defer fb.mu.Unlock(); return len(fb.waiters) == i+1 }) {
			t.Fatalf("waiter %d not queued", i)
		}
	}
	fb.release(1)
	if first := <-got; first != 0 {
		t.Errorf("first granted waiter = %d, want 0", first)
	}
	fb.grant(2) // a reload raised the cap
	select {
	case second := <-got:
		if second != 1 {
			t.Errorf("second granted waiter = %d, want 1", second)
		}
	case <-time.After(waitLimit):
		t.Fatalf("raising the limit did not let the waiter on")
	}
	if got := fb.count(); got != 2 {
		t.Errorf("count() = %d, want 2", got)
	}
}

// TestBodiesCountedPerClient: bodies are counted per client as the other
// per-client limits count one: behind a trusted proxy by X-Forwarded-For
// (so one visitor cannot use up the proxy's share), never by a spoofed one,
// and an IPv6 client by its /64.
func TestBodiesCountedPerClient(t *testing.T) {
	s := newTestSpool(t, Options{BufferRequests: true, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	key := func(remote, xff string) string {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		return s.clientKey(r).String()
	}
	for _, tt := range []struct{ remote, xff, want string }{
		{"10.1.2.3:5000", "203.0.113.7", "203.0.113.7"},      // a trusted proxy: the client it names
		{"10.1.2.3:5000", "203.0.113.8", "203.0.113.8"},      // another client behind it
		{"198.51.100.1:5000", "203.0.113.7", "198.51.100.1"}, // not trusted: the peer
		{"[2001:db8:1:2::a]:5000", "", "2001:db8:1:2::"},     // one /64
		{"[2001:db8:1:2::b]:5000", "", "2001:db8:1:2::"},
	} {
		if got := key(tt.remote, tt.xff); got != tt.want {
			t.Errorf("clientKey(%s, XFF %q) = %s, want %s", tt.remote, tt.xff, got, tt.want)
		}
	}
}
