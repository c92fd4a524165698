package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// rawApp is a loopback TCP server whose connections are handled by serve,
// for apps that misbehave below HTTP.
func rawApp(t testing.TB, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// readRequestHead reads one request head from br, reporting whether it got one.
func readRequestHead(br *bufio.Reader) (*http.Request, bool) {
	req, err := http.ReadRequest(br)
	return req, err == nil
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// blackholeAddr returns a loopback address whose listen queue is full, so
// a connect to it hangs: a listen(2) backlog of 0 holds one connection, and
// Linux drops further SYNs while the queue is full.
func blackholeAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			return addr // the queue is full
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("could not fill a listen queue on this kernel: connect timeouts untestable here")
	return ""
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestUpstreamErrors(t *testing.T) {
	blackhole := blackholeAddr(t)
	silent := rawApp(t, func(c net.Conn) {
		io.Copy(io.Discard, c) // reads the request, never answers
	})
	deaf := rawApp(t, func(c net.Conn) {
		time.Sleep(10 * time.Second) // never reads
	})
	resetter := rawApp(t, func(c net.Conn) {
		readRequestHead(bufio.NewReader(c))
		c.(*net.TCPConn).SetLinger(0) // RST
	})
	garbage := rawApp(t, func(c net.Conn) {
		readRequestHead(bufio.NewReader(c))
		io.WriteString(c, "SPDY/9 what\r\n\r\n")
	})
	tests := []struct {
		name       string
		upstream   string
		method     string
		body       io.Reader
		opts       Options
		wantStatus int
		wantKind   string
	}{
		{"refused", closedPort(t), "GET", nil, Options{}, 502, kindConnect},
		{"unix socket missing", "unix:" + filepath.Join(t.TempDir(), "none.sock"), "GET", nil, Options{}, 502, kindConnect},
		{"connect timeout", blackhole, "GET", nil, Options{ConnectTimeout: 100 * time.Millisecond}, 504, kindConnectTimeout},
		{"read timeout before the head", silent, "GET", nil, Options{ReadTimeout: 100 * time.Millisecond}, 504, kindTimeout},
		{"send timeout", deaf, "PUT", io.LimitReader(zeroReader{}, 256<<20), Options{SendTimeout: 100 * time.Millisecond, ReadTimeout: 20 * time.Second}, 504, kindTimeout},
		{"reset before answer", resetter, "POST", strings.NewReader("x"), Options{}, 502, kindReset},
		{"malformed answer", garbage, "GET", nil, Options{}, 502, kindOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, set := newTestProxy(t, tt.upstream, func(o *Options) {
				o.ConnectTimeout, o.SendTimeout, o.ReadTimeout = tt.opts.ConnectTimeout, tt.opts.SendTimeout, tt.opts.ReadTimeout
			})
			req := httptest.NewRequest(tt.method, "/x", tt.body)
			if lr, ok := tt.body.(*io.LimitedReader); ok {
				req.ContentLength = lr.N
			}
			req.Header.Set("Accept", "application/json")
			ctx, tm := WithTiming(req.Context())
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, req.WithContext(ctx))
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %q)", rec.Code, tt.wantStatus, rec.Body.String())
			}
			if got := rec.Header().Get("X-Bulwark-Error"); got != tt.wantKind {
				t.Errorf("X-Bulwark-Error = %q, want %q", got, tt.wantKind)
			}
			if !strings.Contains(rec.Body.String(), `"by":"bulwark"`) {
				t.Errorf("body = %q, want Bulwark's JSON answer", rec.Body.String())
			}
			if got := tm.Reason(); got != tt.wantKind {
				t.Errorf("Timing.Reason() = %q, want %q", got, tt.wantKind)
			}
			if want := `bulwark_upstream_errors_total{kind="` + tt.wantKind + `"} 1`; !strings.Contains(metricsText(set), want) {
				t.Errorf("metrics lack %q", want)
			}
		})
	}
}

// TestSlowSteadyStreamSucceeds: an app whose answer takes several
// ReadTimeouts in all, but never pauses that long, must not be cut off.
func TestSlowSteadyStreamSucceeds(t *testing.T) {
	const readTimeout = 150 * time.Millisecond
	const chunks = 8 // 8 × 50ms = 400ms, well over readTimeout
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(readTimeout / 3) // the head is late too, but within the gap
		for i := range chunks {
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(readTimeout / 3)
		}
	}))
	t.Cleanup(app.Close)
	p, set := newTestProxy(t, hostOf(app), func(o *Options) { o.ReadTimeout = readTimeout })
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	start := time.Now()
	res, err := http.Get(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("reading the slow stream: %v (after %v)", err, time.Since(start))
	}
	if got := strings.Count(string(body), "\n"); got != chunks || res.StatusCode != 200 {
		t.Errorf("got status %d with %d chunks, want 200 with %d", res.StatusCode, got, chunks)
	}
	if elapsed := time.Since(start); elapsed <= readTimeout {
		// The app's sleeps make this impossible; if it happens, the test
		// did not exercise what it claims to, so it must not pass.
		t.Errorf("the stream took %v, not longer than the read timeout %v: nothing was proved", elapsed, readTimeout)
	}
	if strings.Contains(metricsText(set), `bulwark_upstream_errors_total{kind="timeout"} 1`) {
		t.Errorf("a timeout was counted for a steady stream")
	}
}

// TestReadTimeoutMidBody: a gap longer than ReadTimeout in the middle of
// the answer ends it, and is counted.
func TestReadTimeoutMidBody(t *testing.T) {
	release := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first part\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(app.Close)
	t.Cleanup(func() { close(release) }) // runs before app.Close
	p, set := newTestProxy(t, hostOf(app), func(o *Options) { o.ReadTimeout = 100 * time.Millisecond })
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	res, err := http.Get(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err == nil {
		t.Errorf("reading an answer cut off by the read timeout: got %q and no error, want an aborted body", body)
	}
	if want := `bulwark_upstream_errors_total{kind="timeout"} 1`; !strings.Contains(metricsText(set), want) {
		t.Errorf("metrics lack %q", want)
	}
}

func TestClientGoneIsNotAnswered(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(app.Close)
	t.Cleanup(func() { close(release) })
	p, set := newTestProxy(t, hostOf(app), nil)
	ctx, cancel := context.WithCancel(context.Background())
	ctx, tm := WithTiming(ctx)
	go func() {
		select {
		case <-entered:
		case <-time.After(5 * time.Second):
		}
		cancel()
	}()
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil).WithContext(ctx))
	if rec.Body.Len() != 0 || rec.Header().Get("X-Bulwark-Error") != "" {
		t.Errorf("answer to a gone client: %d %q, want nothing", rec.Code, rec.Body.String())
	}
	if got := tm.Reason(); got != reasonClientClosed {
		t.Errorf("Timing.Reason() = %q, want %q", got, reasonClientClosed)
	}
	for _, k := range errorKinds {
		if want := `bulwark_upstream_errors_total{kind="` + k + `"} 0`; !strings.Contains(metricsText(set), want) {
			t.Errorf("a client going away was counted as an upstream error (%s)", k)
		}
	}
}

// slowReader yields n chunks with a pause before each.
type slowReader struct {
	n     int
	pause time.Duration
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	time.Sleep(r.pause)
	r.n--
	return copy(p, "chunk\n"), nil
}

// TestSlowSteadyUploadSucceeds: the time spent sending a long body counts
// against neither timeout as long as every write progresses; waiting for
// the answer starts after the last write.
func TestSlowSteadyUploadSucceeds(t *testing.T) {
	const timeout = 150 * time.Millisecond
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}))
	t.Cleanup(app.Close)
	p, _ := newTestProxy(t, hostOf(app), func(o *Options) { o.ReadTimeout, o.SendTimeout = timeout, timeout })
	req := httptest.NewRequest("POST", "/", nil)
	req.Body = io.NopCloser(&slowReader{n: 8, pause: timeout / 3}) // 8 × 50ms, well over the timeout
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Body.String() != "48" {
		t.Errorf("slow upload: %d %q, want 200 %q", rec.Code, rec.Body.String(), "48")
	}
}

// TestUpdateTimeouts: a reload's new read timeout applies to the next
// request, over the same pooled connection.
func TestUpdateTimeouts(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(300 * time.Millisecond)
		}
	}))
	t.Cleanup(app.Close)
	p, _ := newTestProxy(t, hostOf(app), func(o *Options) { o.ReadTimeout = 5 * time.Second })
	get := func(path string) int {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code
	}
	if got := get("/slow"); got != 200 {
		t.Fatalf("slow answer within a 5 s read timeout: got %d", got)
	}
	o := *p.o()
	o.ReadTimeout = 50 * time.Millisecond
	p.Update(o)
	if got := get("/slow"); got != http.StatusGatewayTimeout {
		t.Errorf("slow answer after the read timeout was lowered to 50 ms: got %d, want 504", got)
	}
}

// TestDeadlineArmedOncePerSlack pins due: a deadline is armed at d plus
// the slack, not armed again while the armed one still lies within the
// slack after now+d, armed again once it does not (time passed, or a
// reload shortened d), and never earlier than now+d.
func TestDeadlineArmedOncePerSlack(t *testing.T) {
	const d = 800 * time.Millisecond // slack: 100ms
	var armed atomic.Int64
	before := time.Now()
	first, ok := due(&armed, d)
	if !ok || first.Before(before.Add(d+100*time.Millisecond)) || first.After(time.Now().Add(d+100*time.Millisecond)) {
		t.Fatalf("first due = %v, %v; want armed at now+%v+100ms", first, ok, d)
	}
	if _, ok := due(&armed, d); ok {
		t.Errorf("due armed again at once; want the armed deadline kept")
	}
	// As if 150 ms had passed: the armed deadline is now short of now+d.
	armed.Store(first.Add(-150 * time.Millisecond).UnixNano())
	if next, ok := due(&armed, d); !ok || next.Before(time.Now().Add(d)) {
		t.Errorf("due after the slack passed = %v, %v; want armed again, not before now+d", next, ok)
	}
	// A reload to a much shorter timeout must not wait for the long one.
	if short, ok := due(&armed, 80*time.Millisecond); !ok || short.After(time.Now().Add(90*time.Millisecond)) {
		t.Errorf("due with a shorter timeout = %v, %v; want armed again within 90ms", short, ok)
	}
}
