package spool

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func TestResponses_Buffered(t *testing.T) {
	const size = 1<<20 + 3
	tests := []struct {
		name          string
		contentLength bool
		h2            bool
	}{
		{"content-length", true, false},
		{"chunked", false, false},
		{"h2 content-length", true, true},
		{"h2 no length", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := metrics.NewSet()
			s := newTestSpool(t, Options{BufferResponses: true, MemoryPerBody: 64 << 10, Metrics: set})
			body := pattern(size)
			srv, done := serveProto(t, tt.h2, s.Responses(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if got, want := r.ProtoMajor, map[bool]int{false: 1, true: 2}[tt.h2]; got != want {
					t.Errorf("request over HTTP/%d, want HTTP/%d", got, want)
				}
				w.Header().Set("X-App", "yes")
				if tt.contentLength {
					w.Header().Set("Content-Length", fmt.Sprint(size))
				}
				w.WriteHeader(http.StatusCreated)
				for p := body; len(p) > 0; {
					n := min(len(p), 7000)
					if _, err := w.Write(p[:n]); err != nil {
						t.Errorf("handler Write: %v", err)
						return
					}
					w.(http.Flusher).Flush() // only wakes the copier
					p = p[n:]
				}
			})))
			resp, err := srv.Client().Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			waitDone(t, done, tt.name)
			if err != nil || !bytes.Equal(got, body) {
				t.Errorf("client read %d bytes (err %v), identical %v; want %d identical", len(got), err, bytes.Equal(got, body), size)
			}
			if resp.StatusCode != http.StatusCreated || resp.Header.Get("X-App") != "yes" {
				t.Errorf("status %d, X-App %q; want 201, yes", resp.StatusCode, resp.Header.Get("X-App"))
			}
			wantCL := int64(-1)
			if tt.contentLength {
				wantCL = size
			}
			if resp.ContentLength != wantCL {
				t.Errorf("client ContentLength = %d, want %d", resp.ContentLength, wantCL)
			}
			assertClean(t, s)
			if got := metricValue(t, set, `bulwark_spool_bodies_total{kind="response",where="disk"}`); got != 1 {
				t.Errorf("response bodies on disk = %v, want 1", got)
			}
		})
	}
}

// slowClient opens a connection with a tiny receive buffer to srv (whose
// send buffer is tiny too, see newSlowServer), sends a GET for path and
// returns the response with its body unread.
func slowClient(t *testing.T, srv *httptest.Server, path string) (net.Conn, *http.Response) {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4096), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, resp
}

// newSlowServer starts a server for h whose connections have a tiny send
// buffer, so an unbuffered handler writing a large answer blocks on a client
// that does not read. It reports through done each time h returned.
func newSlowServer(t *testing.T, h http.Handler) (*httptest.Server, <-chan struct{}) {
	t.Helper()
	ch := make(chan struct{}, 16)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { ch <- struct{}{} }()
		h.ServeHTTP(w, r)
	}))
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetWriteBuffer(4096)
		}
		return ctx
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, ch
}

// TestResponses_SlotFreeBeforeSlowClient is the slow-client shield: the
// inner handler (the app's slot) returns while the client has read only the
// first bytes, and the client then gets the whole answer.
func TestResponses_SlotFreeBeforeSlowClient(t *testing.T) {
	const size = 4 << 20 // far past every socket buffer on the way
	s := newTestSpool(t, Options{BufferResponses: true})
	body := pattern(size)
	inner := make(chan struct{})
	srv, done := newSlowServer(t, s.Responses(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(inner) // the slot is released here
		w.Header().Set("Content-Length", fmt.Sprint(size))
		for p := body; len(p) > 0; p = p[min(len(p), 32<<10):] {
			if _, err := w.Write(p[:min(len(p), 32<<10)]); err != nil {
				t.Errorf("handler Write: %v", err)
				return
			}
		}
	})))
	_, resp := slowClient(t, srv, "/")
	first := make([]byte, 1024)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("reading the first bytes: %v", err)
	}
	select {
	case <-inner:
	case <-time.After(waitLimit):
		t.Fatalf("inner handler still running while the client paused after %d bytes: the answer is not spooled", len(first))
	}
	if got := s.Stats(); got.ActiveBodies != 1 {
		t.Errorf("Stats() = %+v while feeding the client, want one active body", got)
	}
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	waitDone(t, done, "slow client")
	if got := append(first, rest...); err != nil || !bytes.Equal(got, body) {
		t.Errorf("client read %d bytes (err %v), want %d identical", len(got), err, size)
	}
	assertClean(t, s)
}

func TestResponses_ClientGoesAway(t *testing.T) {
	s := newTestSpool(t, Options{BufferResponses: true})
	srv, done := newSlowServer(t, s.Responses(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := pattern(32 << 10)
		for range 256 { // 8 MiB, or until the client is known gone
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})))
	c, resp := slowClient(t, srv, "/")
	if _, err := io.ReadFull(resp.Body, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitDone(t, done, "client gone")
	assertClean(t, s)
}

// TestResponses_SendTimeout: a client that keeps the connection open but
// reads nothing is given up after SendTimeout, and the spool freed.
func TestResponses_SendTimeout(t *testing.T) {
	s := newTestSpool(t, Options{BufferResponses: true, SendTimeout: 100 * time.Millisecond})
	srv, done := newSlowServer(t, s.Responses(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(pattern(4 << 20))
	})))
	_, resp := slowClient(t, srv, "/")
	defer resp.Body.Close()
	waitDone(t, done, "stalled client")
	assertClean(t, s)
}

func TestResponses_Unbuffered(t *testing.T) {
	tests := []struct {
		name         string
		opts         Options
		method, path string
		header       map[string]string
		status       int
		wantBuffered bool
	}{
		{name: "plain", status: 200, wantBuffered: true},
		{name: "event stream", header: map[string]string{"Content-Type": "text/event-stream"}, status: 200},
		{name: "event stream with params", header: map[string]string{"Content-Type": "Text/Event-Stream; charset=utf-8"}, status: 200},
		{name: "x-accel-buffering no", header: map[string]string{"X-Accel-Buffering": "no"}, status: 200},
		{name: "x-accel-buffering No", header: map[string]string{"X-Accel-Buffering": "No"}, status: 200},
		{name: "x-accel-buffering yes", header: map[string]string{"X-Accel-Buffering": "yes"}, status: 200, wantBuffered: true},
		{name: "stream path", opts: Options{StreamPaths: []string{"/other", "/stream/"}}, path: "/stream/x", status: 200},
		{name: "other path", opts: Options{StreamPaths: []string{"/stream/"}}, path: "/streamx", status: 200, wantBuffered: true},
		{name: "head", method: http.MethodHead, status: 200},
		{name: "204", status: http.StatusNoContent},
		{name: "304", status: http.StatusNotModified},
		{name: "buffering off", opts: Options{BufferResponses: false}, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.BufferResponses = o.BufferResponses || tt.name != "buffering off"
			set := metrics.NewSet()
			o.Metrics = set
			s := newTestSpool(t, o)
			release := make(chan struct{})
			srv, done := serve(t, s.Responses(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				body := tt.status == http.StatusOK
				if body {
					io.WriteString(w, "data: 1\n\n")
				}
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-time.After(waitLimit):
				}
				if body {
					io.WriteString(w, "data: 2\n\n")
				}
			})))
			method := cmpOr(tt.method, http.MethodGet)
			req, err := http.NewRequest(method, srv.URL+cmpOr(tt.path, "/"), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			var got string
			if tt.status == http.StatusOK && method == http.MethodGet {
				// The first event arrives while the handler still runs.
				first, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("reading the first event: %v", err)
				}
				got = first
			}
			if st := s.Stats(); (st.ActiveBodies == 1) != tt.wantBuffered {
				t.Errorf("Stats() = %+v mid-answer, want buffered %v", st, tt.wantBuffered)
			}
			close(release)
			rest, err := io.ReadAll(br)
			if err != nil {
				t.Fatal(err)
			}
			got += string(rest)
			waitDone(t, done, tt.name)
			want := ""
			if tt.status == http.StatusOK && method == http.MethodGet {
				want = "data: 1\n\ndata: 2\n\n"
			}
			if got != want || resp.StatusCode != tt.status {
				t.Errorf("client got %d %q, want %d %q", resp.StatusCode, got, tt.status, want)
			}
			if v, ok := resp.Header["X-Accel-Buffering"]; ok {
				t.Errorf("client saw X-Accel-Buffering %q, want it removed", v)
			}
			if ct := tt.header["Content-Type"]; ct != "" && resp.Header.Get("Content-Type") != ct {
				t.Errorf("Content-Type = %q, want %q", resp.Header.Get("Content-Type"), ct)
			}
			assertClean(t, s)
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// wsBackend answers an upgrade request by hijacking the connection, sending
// 101 and echoing what it reads.
func wsBackend(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("backend Hijack: %v", err)
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		buf := make([]byte, 64)
		for range 100 {
			n, err := brw.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestResponses_WebSocketPassesThrough(t *testing.T) {
	backend := wsBackend(t)
	u, err := url.Parse(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		next http.Handler
	}{
		{"direct hijack", backend.Config.Handler},
		{"through httputil.ReverseProxy", httputil.NewSingleHostReverseProxy(u)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestSpool(t, Options{BufferResponses: true})
			srv, _ := serve(t, s.Responses(tt.next))
			c := rawRequest(t, srv, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			c.SetDeadline(time.Now().Add(waitLimit))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status = %d, want 101", resp.StatusCode)
			}
			for _, msg := range []string{"ping", "pong"} {
				io.WriteString(c, msg)
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
					t.Fatalf("echo = %q, %v; want %q", got, err, msg)
				}
				if st := s.Stats(); st.ActiveBodies != 0 {
					t.Errorf("Stats() = %+v during the WebSocket session, want nothing spooled", st)
				}
			}
		})
	}
}

func TestResponses_HijackWhileBuffering(t *testing.T) {
	s := newTestSpool(t, Options{BufferResponses: true})
	errc := make(chan error, 1)
	srv, done := serve(t, s.Responses(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
		_, _, err := w.(http.Hijacker).Hijack()
		errc <- err
	})))
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	waitDone(t, done, "hijack")
	if err := <-errc; err == nil {
		t.Errorf("Hijack of a buffered answer = nil error, want one")
	}
	if string(got) != "hello" {
		t.Errorf("client got %q, want %q", got, "hello")
	}
}

// TestResponses_DiskCap: a response past the disk cap (and with the memory
// budget taken by another body) is not failed; it goes on in step with the
// client, and the spool never holds more than the cap and one chunk.
func TestResponses_DiskCap(t *testing.T) {
	tests := []struct {
		name     string
		hogMem   bool
		diskFull bool
	}{
		{"disk cap", false, false},
		{"disk cap and no memory budget", true, false},
		{"disk write fails", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const per = 32 << 10
			var logs bytes.Buffer
			s := newTestSpool(t, Options{BufferResponses: true, MemoryPerBody: per, MemoryBudget: per, DiskLimit: 1,
				Logger: newTextLogger(&logs)})
			if tt.diskFull {
				s.o().DiskLimit = 1 << 30
				s.openTemp = func() (*os.File, error) { return os.OpenFile("/dev/full", os.O_RDWR, 0) }
			}
			if tt.hogMem {
				hog := s.NewBuffer()
				hog.Write(pattern(per))
				defer hog.Close()
			}
			body := pattern(1 << 20)
			var maxMem, maxDisk int64
			srv, done := serve(t, s.Responses(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for p := body; len(p) > 0; p = p[min(len(p), 10_000):] {
					if _, err := w.Write(p[:min(len(p), 10_000)]); err != nil {
						t.Errorf("handler Write: %v", err)
						return
					}
					st := s.Stats()
					maxMem, maxDisk = max(maxMem, st.MemoryBytes), max(maxDisk, st.DiskBytes)
				}
			})))
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			waitDone(t, done, tt.name)
			if err != nil || !bytes.Equal(got, body) {
				t.Errorf("client read %d bytes (err %v), want %d identical", len(got), err, len(body))
			}
			if maxMem > 2*per || (!tt.diskFull && maxDisk > 1) {
				t.Errorf("spool peaked at %d bytes of memory and %d on disk, want at most %d and 1", maxMem, maxDisk, 2*per)
			}
			if tt.diskFull && !strings.Contains(logs.String(), "spool file failed") {
				t.Errorf("log = %q, want a line about the failed spool file", logs.String())
			}
		})
	}
}

func TestResponses_Trailers(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) { testTrailers(t, h2) })
	}
}

func testTrailers(t *testing.T, h2 bool) {
	s := newTestSpool(t, Options{BufferResponses: true, MemoryPerBody: 16 << 10})
	srv, done := serveProto(t, h2, s.Responses(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.Write(pattern(100 << 10))
		w.Header().Set("X-Sum", "42")
		w.Header().Set(http.TrailerPrefix+"X-Late", "7")
	})))
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	waitDone(t, done, "trailers")
	if err != nil || n != 100<<10 {
		t.Errorf("client read %d bytes, %v; want %d", n, err, 100<<10)
	}
	if got := resp.Trailer.Get("X-Sum") + "," + resp.Trailer.Get("X-Late"); got != "42,7" {
		t.Errorf("trailers X-Sum,X-Late = %q, want %q", got, "42,7")
	}
	assertClean(t, s)
}

// TestResponses_HandlerAborts: a handler that panics with
// http.ErrAbortHandler (the proxy, when the app's answer breaks off) still
// frees the spool, and the client sees a truncated answer, not a whole one.
func TestResponses_HandlerAborts(t *testing.T) {
	s := newTestSpool(t, Options{BufferResponses: true, MemoryPerBody: 16 << 10})
	srv, done := serve(t, s.Responses(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "200000")
		w.Write(pattern(100_000))
		panic(http.ErrAbortHandler)
	})))
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	waitDone(t, done, "abort")
	if err == nil || n >= 200_000 {
		t.Errorf("client read %d bytes, err %v; want a truncated answer and an error", n, err)
	}
	assertClean(t, s)
}

// TestChain_Proxy runs the lead's chain with a real reverse proxy: a chunked
// upload reaches the app with a Content-Length, the answer comes back whole,
// and with one slot two requests still both complete.
func TestChain_Proxy(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength < 0 || len(r.TransferEncoding) != 0 {
			http.Error(w, fmt.Sprintf("app saw ContentLength %d, TransferEncoding %q", r.ContentLength, r.TransferEncoding), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, r.Body)
	}))
	t.Cleanup(backend.Close)
	u, err := url.Parse(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestSpool(t, Options{BufferRequests: true, BufferResponses: true, MaxBody: 8 << 20})
	slot := make(chan struct{}, 1) // max_concurrency = 1
	admit := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			slot <- struct{}{}
			defer func() { <-slot }()
			next.ServeHTTP(w, r)
		})
	}
	srv, done := serve(t, s.Responses(s.Requests(admit(httputil.NewSingleHostReverseProxy(u)))))
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := pattern(1<<20 + i)
			resp, err := http.Post(srv.URL, "application/octet-stream", hideLength(body))
			if err != nil {
				t.Errorf("POST: %v", err)
				return
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || err != nil || !bytes.Equal(got, body) {
				t.Errorf("answer %d with %d bytes (err %v), identical %v; want 200 with %d identical: %.100s",
					resp.StatusCode, len(got), err, bytes.Equal(got, body), len(body), got)
			}
		}()
	}
	wg.Wait()
	waitDone(t, done, "first")
	waitDone(t, done, "second")
	assertClean(t, s)
}

// TestResponses_ManyUnderTightCaps runs several responses and uploads at
// once with a memory budget and disk cap smaller than one body: uploads
// past the cap are refused with 507, responses all complete byte for byte,
// and everything is freed.
func TestResponses_ManyUnderTightCaps(t *testing.T) {
	const n, size = 8, 512 << 10
	s := newTestSpool(t, Options{BufferRequests: true, BufferResponses: true,
		MemoryPerBody: 32 << 10, MemoryBudget: 64 << 10, DiskLimit: 256 << 10})
	body := pattern(size)
	srv, done := serve(t, s.Responses(s.Requests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		for p := body; len(p) > 0; p = p[min(len(p), 20_000):] {
			if _, err := w.Write(p[:min(len(p), 20_000)]); err != nil {
				return
			}
		}
	}))))
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp *http.Response
			var err error
			if i%2 == 0 {
				resp, err = http.Get(srv.URL)
			} else {
				resp, err = http.Post(srv.URL, "application/octet-stream", bytes.NewReader(pattern(100<<10)))
			}
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusInsufficientStorage && i%2 == 1:
				// An upload may find the disk cap taken by the others.
			case resp.StatusCode != http.StatusOK || err != nil || !bytes.Equal(got, body):
				t.Errorf("request %d: %d with %d bytes (err %v), want 200 with %d identical", i, resp.StatusCode, len(got), err, size)
			}
		}()
	}
	wg.Wait()
	for range n {
		waitDone(t, done, "concurrent")
	}
	assertClean(t, s)
}

// TestResponses_SmallAnswersDirect: an answer declaring at most DirectMax
// bytes is written straight through; one byte more is spooled.
func TestResponses_SmallAnswersDirect(t *testing.T) {
	set := metrics.NewSet()
	s := newTestSpool(t, Options{BufferResponses: true, Metrics: set})
	spooled := func() uint64 {
		return set.GetOrCreateCounter(`bulwark_spool_bodies_total{kind="response",where="memory"}`).Get() +
			set.GetOrCreateCounter(`bulwark_spool_bodies_total{kind="response",where="disk"}`).Get()
	}
	for _, tt := range []struct {
		size        int
		wantSpooled uint64
	}{{DirectMax, 0}, {DirectMax + 1, 1}} {
		before := spooled()
		srv, done := serve(t, s.Responses(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(tt.size))
			w.Write(pattern(tt.size))
		})))
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		waitDone(t, done, "answer")
		if len(b) != tt.size {
			t.Errorf("size %d: client got %d bytes", tt.size, len(b))
		}
		if got := spooled() - before; got != tt.wantSpooled {
			t.Errorf("size %d: %d answers spooled, want %d", tt.size, got, tt.wantSpooled)
		}
	}
}
