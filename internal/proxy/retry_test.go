package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// spooledRequest builds a request whose body can be replayed, as the
// request spool hands it on: Content-Length known and GetBody set.
func spooledRequest(method, target, body string) *http.Request {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
	return req
}

// readFullRequest reads one request head and its Content-Length body.
func readFullRequest(br *bufio.Reader) (*http.Request, string, bool) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, "", false
	}
	b, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, "", false
	}
	return req, string(b), true
}

// closeAfterEachAnswer is an app that closes every connection right after
// its answer, without "Connection: close", and reports each close on closed.
func closeAfterEachAnswer(t *testing.T) (addr string, conns *atomic.Int32, closed chan struct{}) {
	conns = new(atomic.Int32)
	closed = make(chan struct{}, 1000)
	addr = rawApp(t, func(c net.Conn) {
		conns.Add(1)
		_, body, ok := readFullRequest(bufio.NewReader(c))
		if ok {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(body)+2)+"\r\n\r\nok"+body)
		}
		c.Close()
		closed <- struct{}{}
	})
	return addr, conns, closed
}

// TestStaleConnectionAfterEachAnswer: the app closes each pooled connection
// after its answer, so the next request finds a stale one in the pool
// (unless the Transport noticed first). Nothing of the request was sent on
// it, so every request, POST with a spooled body included, must succeed.
func TestStaleConnectionAfterEachAnswer(t *testing.T) {
	addr, conns, closed := closeAfterEachAnswer(t)
	p, set := newTestProxy(t, addr, nil)
	const rounds = 60
	for i := range rounds {
		var req *http.Request
		want := "ok"
		if i%2 == 0 {
			req = httptest.NewRequest("GET", "/", nil)
		} else {
			body := "payload " + strconv.Itoa(i)
			req = spooledRequest("POST", "/", body)
			want += body
		}
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		if rec.Code != 200 || rec.Body.String() != want {
			t.Errorf("%s #%d: %d %q, want 200 %q", req.Method, i, rec.Code, rec.Body.String(), want)
		}
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatalf("the app never closed connection #%d", i)
		}
	}
	if got := conns.Load(); got < rounds {
		t.Errorf("app saw %d connections for %d requests, want one each", got, rounds)
	}
	if text := metricsText(set); !strings.Contains(text, `bulwark_upstream_errors_total{kind="reset"} 0`) {
		t.Errorf("a stale connection surfaced as an error:\n%s", text)
	}
}

// TestStaleConnectionRace is the same app without waiting for its close,
// so the close may cross the next request on the wire. Idempotent requests
// are replayed and must all succeed. (A POST written before the close
// arrived cannot be told from one the app crashed on: it gets a 502, as
// with nginx, and is not asserted here.)
func TestStaleConnectionRace(t *testing.T) {
	addr, _, _ := closeAfterEachAnswer(t)
	p, _ := newTestProxy(t, addr, nil)
	for i := range 60 {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 200 || rec.Body.String() != "ok" {
			t.Errorf("GET #%d: %d %q, want 200 %q", i, rec.Code, rec.Body.String(), "ok")
		}
	}
}

// TestFirstWriteToClosedConnSendsNothing checks the mechanism behind the
// stale-connection replay: once the app's close has arrived, the first
// write of the next request fails without sending a byte.
func TestFirstWriteToClosedConnSendsNothing(t *testing.T) {
	for _, appCloses := range []bool{true, false} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		got := make(chan int, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- -1
				return
			}
			defer c.Close()
			io.WriteString(c, "answer")
			if appCloses {
				c.Close()
				got <- 0
				return
			}
			b := make([]byte, 16)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _ := c.Read(b)
			got <- n
		}()
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		p, _ := newTestProxy(t, "127.0.0.1:1", func(o *Options) { o.ReadTimeout, o.SendTimeout = 5*time.Second, 5*time.Second })
		c := &deadlineConn{Conn: raw, p: p}
		if _, err := io.ReadFull(c, make([]byte, 6)); err != nil {
			t.Fatal(err)
		}
		if appCloses {
			<-got
			deadline := time.Now().Add(5 * time.Second)
			for !peerClosed(raw) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}
		n, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		if appCloses {
			if n != 0 || !errors.Is(err, errStaleConn) {
				t.Errorf("Write after the app closed = %d, %v; want 0, errStaleConn", n, err)
			}
			continue
		}
		if err != nil || n == 0 {
			t.Errorf("Write on a live connection = %d, %v; want it sent", n, err)
		}
		if sent := <-got; sent == 0 {
			t.Errorf("the app received nothing on a live connection")
		}
	}
}

// TestStaleConnectionClosedOnNextRequest: the app keeps the connection
// after an answer, then closes it without answering as soon as the next
// request arrives (uvicorn's keep-alive timeout firing as the request comes
// in). An idempotent request is replayed on a fresh connection.
func TestStaleConnectionClosedOnNextRequest(t *testing.T) {
	app := rawApp(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, _, ok := readFullRequest(br); !ok {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		br.Peek(1) // the next request begins: drop the connection
	})
	p, _ := newTestProxy(t, app, nil)
	for i := range 10 {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 200 || rec.Body.String() != "ok" {
			t.Errorf("GET #%d: %d %q, want 200 %q", i, rec.Code, rec.Body.String(), "ok")
		}
	}
}

// crashOnce is an app that resets the first n connections after reading
// the request, then answers normally.
func crashOnce(t *testing.T, n int32) (addr string, conns *atomic.Int32) {
	conns = new(atomic.Int32)
	addr = rawApp(t, func(c net.Conn) {
		k := conns.Add(1)
		_, _, ok := readFullRequest(bufio.NewReader(c))
		if !ok {
			return
		}
		if k <= n {
			c.(*net.TCPConn).SetLinger(0)
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	})
	return addr, conns
}

func TestRetryAfterCrash(t *testing.T) {
	errNotReady := errors.New("app still down")
	tests := []struct {
		name       string
		req        func() *http.Request
		crashes    int32
		awaitErr   error
		wantStatus int
		wantConns  int32
		wantAwaits int32
	}{
		{"GET retried once", func() *http.Request { return httptest.NewRequest("GET", "/", nil) }, 1, nil, 200, 2, 1},
		{"HEAD retried once", func() *http.Request { return httptest.NewRequest("HEAD", "/", nil) }, 1, nil, 200, 2, 1},
		{"GET not retried twice", func() *http.Request { return httptest.NewRequest("GET", "/", nil) }, 2, nil, 502, 2, 1},
		{"GET not retried when the app stays down", func() *http.Request { return httptest.NewRequest("GET", "/", nil) }, 1, errNotReady, 502, 1, 1},
		{"POST never retried", func() *http.Request { return spooledRequest("POST", "/", "data") }, 1, nil, 502, 1, 0},
		{"GET with a body that cannot be replayed", func() *http.Request {
			r := httptest.NewRequest("GET", "/", io.NopCloser(strings.NewReader("q")))
			r.ContentLength = 1
			return r
		}, 1, nil, 502, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, conns := crashOnce(t, tt.crashes)
			var awaits atomic.Int32
			p, _ := newTestProxy(t, addr, func(o *Options) {
				o.KeepAlive = -1 // fresh connections: only the proxy's own retry applies
				o.AwaitReady = func(ctx context.Context) error {
					awaits.Add(1)
					return tt.awaitErr
				}
			})
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, tt.req())
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if tt.wantStatus == 502 {
				if got := rec.Header().Get("X-Bulwark-Error"); got != kindReset {
					t.Errorf("X-Bulwark-Error = %q, want %q", got, kindReset)
				}
			}
			if got := conns.Load(); got != tt.wantConns {
				t.Errorf("app saw %d connections, want %d", got, tt.wantConns)
			}
			if got := awaits.Load(); got != tt.wantAwaits {
				t.Errorf("AwaitReady called %d times, want %d", got, tt.wantAwaits)
			}
		})
	}
}

func TestRetryWithoutAwaitReadyIsImmediate(t *testing.T) {
	addr, conns := crashOnce(t, 1)
	p, _ := newTestProxy(t, addr, func(o *Options) { o.KeepAlive = -1 })
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 200 || conns.Load() != 2 {
		t.Errorf("GET after a crash without AwaitReady: status %d after %d connections, want 200 after 2", rec.Code, conns.Load())
	}
}

// TestRefusedRetriedAfterAwaitReady: the app is down when the request
// arrives; AwaitReady brings it up (as the hold gate waits for a restart),
// and the request, never sent to anyone, goes through, POST included.
func TestRefusedRetriedAfterAwaitReady(t *testing.T) {
	addr := closedPort(t)
	var mu sync.Mutex
	var got []string
	startApp := func(ctx context.Context) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			got = append(got, r.Method+" "+string(b))
			mu.Unlock()
		})}
		go s.Serve(ln)
		t.Cleanup(func() { s.Close() })
		return nil
	}
	p, _ := newTestProxy(t, addr, func(o *Options) { o.AwaitReady = startApp })
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, spooledRequest("POST", "/", "order"))
	if rec.Code != 200 {
		t.Errorf("POST to a refusing app with AwaitReady: status %d, want 200 (%s)", rec.Code, rec.Body.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "POST order" {
		t.Errorf("app got %q, want exactly one %q", got, "POST order")
	}
}

func TestMaxBody(t *testing.T) {
	const limit = 1000
	type seen struct {
		n   int
		err error
	}
	seenc := make(chan seen, 10)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		seenc <- seen{int(n), err}
	}))
	t.Cleanup(app.Close)
	p, _ := newTestProxy(t, hostOf(app), func(o *Options) { o.MaxBody = limit })

	tests := []struct {
		name       string
		size       int
		chunked    bool
		wantStatus int
		wantAppMax int // -1: the app must not be reached at all
	}{
		{"declared at the limit", limit, false, 200, limit},
		{"declared one over", limit + 1, false, 413, -1},
		{"chunked at the limit", limit, true, 200, limit},
		{"chunked one over", limit + 1, true, 413, limit},
		{"chunked far over", 1 << 20, true, 413, limit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := bytes.Repeat([]byte("x"), tt.size)
			req := httptest.NewRequest("POST", "/upload", bytes.NewReader(body))
			if tt.chunked {
				req.Body = io.NopCloser(bytes.NewReader(body))
				req.ContentLength = -1
			}
			ctx, tm := WithTiming(req.Context())
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, req.WithContext(ctx))
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if tt.wantStatus == 413 {
				if got := rec.Header().Get("X-Bulwark-Error"); got != reasonBodyTooLarge {
					t.Errorf("X-Bulwark-Error = %q, want %q", got, reasonBodyTooLarge)
				}
				if got := tm.Reason(); got != reasonBodyTooLarge {
					t.Errorf("Timing.Reason() = %q, want %q", got, reasonBodyTooLarge)
				}
			}
			if tt.wantAppMax < 0 {
				select {
				case s := <-seenc:
					t.Errorf("the app got a request (%d bytes), want none", s.n)
				default:
				}
				return
			}
			select {
			case s := <-seenc:
				if s.n > tt.wantAppMax {
					t.Errorf("the app received %d body bytes, want at most %d", s.n, tt.wantAppMax)
				}
				if tt.wantStatus == 200 && (s.err != nil || s.n != tt.size) {
					t.Errorf("the app received %d bytes (err %v), want all %d", s.n, s.err, tt.size)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("the app never finished reading the body")
			}
		})
	}
}

// TestClientBodyErrorIsNotTheApps: a client whose upload breaks is not
// counted as an upstream failure.
func TestClientBodyErrorIsNotTheApps(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(app.Close)
	p, set := newTestProxy(t, hostOf(app), nil)
	req := httptest.NewRequest("POST", "/", nil)
	req.Body = io.NopCloser(io.MultiReader(strings.NewReader("part"), errReader{}))
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || rec.Header().Get("X-Bulwark-Error") != reasonClientBody {
		t.Errorf("broken upload: %d %q, want 400 %q", rec.Code, rec.Header().Get("X-Bulwark-Error"), reasonClientBody)
	}
	for _, k := range errorKinds {
		if want := `bulwark_upstream_errors_total{kind="` + k + `"} 0`; !strings.Contains(metricsText(set), want) {
			t.Errorf("a broken upload was counted as an upstream error (%s)", k)
		}
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

// TestRefusedRetriedUntilTheAppIsBack: right after a crash the supervisor
// may still report the dead app as ready, so AwaitReady returns at once
// while the app refuses; the request is tried again after a pause, and
// succeeds once the app is back, never sent twice.
func TestRefusedRetriedUntilTheAppIsBack(t *testing.T) {
	addr := closedPort(t)
	var awaits atomic.Int32
	var served atomic.Int32
	awaitReady := func(ctx context.Context) error {
		if awaits.Add(1) == 3 { // the app comes back before the third attempt
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) })}
			go s.Serve(ln)
			t.Cleanup(func() { s.Close() })
		}
		return nil
	}
	p, _ := newTestProxy(t, addr, func(o *Options) { o.AwaitReady = awaitReady })
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 200 || served.Load() != 1 {
		t.Errorf("got %d, app served %d; want 200 served once", rec.Code, served.Load())
	}
	if got := awaits.Load(); got != 3 {
		t.Errorf("AwaitReady called %d times, want 3", got)
	}
}

// TestRequestThatKillsTheAppSentTwiceAtMost: a request that makes the app
// drop its connection every time (a worker that crashes on it) reaches the
// app twice at most, on a reused keep-alive connection too: in a pool of
// workers each try can kill one. It used to be sent three times (the
// upstream's own replay on a fresh connection, then Proxy.retry).
func TestRequestThatKillsTheAppSentTwiceAtMost(t *testing.T) {
	tests := []struct {
		name string
		req  func() *http.Request
	}{
		{"GET", func() *http.Request { return httptest.NewRequest("GET", "/die", nil) }},
		{"POST with an idempotency key", func() *http.Request {
			r := spooledRequest("POST", "/die", "data")
			r.Header.Set("Idempotency-Key", "k1")
			return r
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var deaths atomic.Int32
			addr := rawApp(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				for {
					req, _, ok := readFullRequest(br)
					if !ok {
						return
					}
					if req.URL.Path == "/die" {
						deaths.Add(1)
						c.(*net.TCPConn).SetLinger(0)
						return
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			})
			p, _ := newTestProxy(t, addr, nil)
			warm := httptest.NewRecorder()
			p.ServeHTTP(warm, httptest.NewRequest("GET", "/ok", nil)) // a pooled connection to reuse
			if warm.Code != 200 {
				t.Fatalf("warm-up GET = %d", warm.Code)
			}
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, tt.req())
			if rec.Code != http.StatusBadGateway {
				t.Errorf("status = %d, want 502", rec.Code)
			}
			if got := deaths.Load(); got != 2 {
				t.Errorf("the request reached the app %d times, want 2 (the first try and one retry)", got)
			}
		})
	}
}

// TestRetryIdempotencyKeyOnce: a POST with an idempotency key whose
// connection died is sent once more, as a GET is.
func TestRetryIdempotencyKeyOnce(t *testing.T) {
	addr, conns := crashOnce(t, 1)
	p, _ := newTestProxy(t, addr, func(o *Options) { o.KeepAlive = -1 })
	req := spooledRequest("POST", "/", "data")
	req.Header.Set("Idempotency-Key", "k1")
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	if rec.Code != 200 || conns.Load() != 2 {
		t.Errorf("POST with Idempotency-Key after a crash: status %d after %d connections, want 200 after 2", rec.Code, conns.Load())
	}
}

// TestRetryWaitsOutADyingApp: the app dies under a GET, and for a moment
// after (before the supervisor sees the exit, so AwaitReady still passes)
// its port resets every connection. The one retry must not be spent on the
// dying app: it waits, then reaches the app that lives.
func TestRetryWaitsOutADyingApp(t *testing.T) {
	const dyingFor = 50 * time.Millisecond
	var mu sync.Mutex
	var diedAt time.Time
	addr := rawApp(t, func(c net.Conn) {
		mu.Lock()
		dying := !diedAt.IsZero() && time.Since(diedAt) < dyingFor
		mu.Unlock()
		if dying {
			c.(*net.TCPConn).SetLinger(0)
			return
		}
		br := bufio.NewReader(c)
		req, _, ok := readFullRequest(br)
		if !ok {
			return
		}
		if req.URL.Path == "/die" {
			mu.Lock()
			if diedAt.IsZero() {
				diedAt = time.Now()
				mu.Unlock()
				c.(*net.TCPConn).SetLinger(0)
				return
			}
			mu.Unlock()
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	var waits atomic.Int32
	p, _ := newTestProxy(t, addr, func(o *Options) {
		o.AwaitReady = func(context.Context) error { waits.Add(1); return nil }
	})
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/die", nil))
	if rec.Code != 200 || rec.Body.String() != "ok" {
		t.Errorf("GET whose app died under it = %d %q, want 200 \"ok\" from the app that lives", rec.Code, rec.Body.String())
	}
	if waits.Load() != 1 {
		t.Errorf("AwaitReady called %d times, want 1", waits.Load())
	}
}
