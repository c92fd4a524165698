package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestUpstreamPoolReuse(t *testing.T) {
	tests := []struct {
		name      string
		keepAlive int
		wantConns int32
		wantIdle  int
	}{
		{"pooled", 0, 1, 1},
		{"no pooling", -1, 5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, conns := cannedApp(t, func(r *http.Request) (string, bool) {
				return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", r.Close
			})
			u := upstreamFor(t, addr, func(o *Options) { o.KeepAlive = tt.keepAlive })
			for i := range 5 {
				res, err := u.RoundTrip(newUpstreamRequest(t, "GET", addr, nil))
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			if got := conns.Load(); got != tt.wantConns {
				t.Errorf("5 requests took %d connections, want %d", got, tt.wantConns)
			}
			if got := u.idleCount(addr); got != tt.wantIdle {
				t.Errorf("%d idle connections, want %d", got, tt.wantIdle)
			}
		})
	}
}

// TestUpstreamPoolBound: concurrent requests open several connections; at
// most KeepAlive of them stay idle after.
func TestUpstreamPoolBound(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	addr, conns := cannedApp(t, func(*http.Request) (string, bool) {
		entered <- struct{}{}
		<-release
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	u := upstreamFor(t, addr, func(o *Options) { o.KeepAlive = 2 })
	errc := make(chan error, 4)
	for range 4 {
		req := newUpstreamRequest(t, "GET", addr, nil)
		go func() {
			res, err := u.RoundTrip(req)
			if err == nil {
				_, err = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			errc <- err
		}()
	}
	for range 4 {
		select {
		case <-entered:
		case <-time.After(5 * time.Second):
			t.Fatal("the requests did not all reach the app")
		}
	}
	close(release)
	for range 4 {
		if err := <-errc; err != nil {
			t.Errorf("request: %v", err)
		}
	}
	if got, idle := conns.Load(), u.idleCount(addr); got != 4 || idle != 2 {
		t.Errorf("%d connections, %d idle; want 4, 2", got, idle)
	}
}

func TestUpstreamIdleTimeout(t *testing.T) {
	closed := make(chan struct{}, 1)
	addr := rawApp(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		if _, _, ok := readFullRequest(br); ok {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		if _, err := br.ReadByte(); errors.Is(err, io.EOF) {
			closed <- struct{}{} // the proxy closed it
		}
	})
	u := upstreamFor(t, addr, func(o *Options) { o.IdleConnTimeout = 50 * time.Millisecond })
	res, err := u.RoundTrip(newUpstreamRequest(t, "GET", addr, nil))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection was not closed")
	}
	if got := u.idleCount(addr); got != 0 {
		t.Errorf("%d idle connections after the idle timeout, want 0", got)
	}
}

// TestUpstreamStaleConnReplayed: a pooled connection the app closed is
// noticed before anything is sent or read of the body, so even a body
// without GetBody is sent, once, on a fresh connection.
func TestUpstreamStaleConnReplayed(t *testing.T) {
	tests := []struct {
		name string
		req  func(addr string) *http.Request
	}{
		{"get", func(addr string) *http.Request { return newUpstreamRequest(t, "GET", addr, nil) }},
		{"post, body not replayable", func(addr string) *http.Request {
			r := newUpstreamRequest(t, "POST", addr, io.NopCloser(strings.NewReader("once")))
			r.ContentLength = 4
			return r
		}},
		{"post, chunked", func(addr string) *http.Request {
			r := newUpstreamRequest(t, "POST", addr, io.NopCloser(strings.NewReader("once")))
			r.ContentLength = -1
			return r
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, conns, closed := closeAfterEachAnswer(t)
			u := upstreamFor(t, addr, nil)
			for i := range 2 {
				res, err := u.RoundTrip(tt.req(addr))
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if i == 1 && !strings.HasPrefix(string(body), "ok") {
					t.Errorf("answer after a stale connection = %q, want ok…", body)
				}
				select {
				case <-closed:
				case <-time.After(5 * time.Second):
					t.Fatal("the app did not close the connection")
				}
			}
			if got := conns.Load(); got != 2 {
				t.Errorf("app saw %d connections, want 2", got)
			}
		})
	}
}

// TestUpstreamDroppedWhileBodyWaits: the app drops a reused connection
// when the next request's head arrives, while the body goroutine still
// waits for the client's body. The head may have reached the app, so the
// upstream does not send it again, idempotency key or not: that is
// Proxy.retry's one retry (TestRetryIdempotencyKeyOnce). The stalled
// goroutine ends once the body comes.
func TestUpstreamDroppedWhileBodyWaits(t *testing.T) {
	tests := []struct {
		name       string
		idempotent bool
		wantErr    bool
	}{
		{"idempotency key, not replayed here", true, true},
		{"plain post, not replayed", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, conns := cannedApp(t, func(r *http.Request) (string, bool) {
				return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
			})
			addr = rawApp(t, func(c net.Conn) {
				k := conns.Add(1)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					req, ok := readRequestHead(br)
					if !ok || (k == 1 && req.Method == "POST") {
						return // drops the connection on the POST's head
					}
					io.Copy(io.Discard, req.Body)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			})
			u := upstreamFor(t, addr, nil)
			res, err := u.RoundTrip(newUpstreamRequest(t, "GET", addr, nil))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			pr, pw := io.Pipe()
			defer pw.Close()
			req := newUpstreamRequest(t, "POST", addr, pr)
			req.ContentLength = -1
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("again")), nil }
			if tt.idempotent {
				req.Header.Set("Idempotency-Key", "k1")
			}
			res, err = u.RoundTrip(req)
			if (err != nil) != tt.wantErr {
				t.Fatalf("POST on a dropped connection: %v, want error %v", err, tt.wantErr)
			}
			if err == nil {
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if string(body) != "ok" {
					t.Errorf("replayed POST answered %q, want %q", body, "ok")
				}
			} else if got := kindOf(err); got != kindReset {
				t.Errorf("kindOf(%v) = %q, want %q", err, got, kindReset)
			}
			pw.Write([]byte("late body")) // the stalled goroutine now writes to a closed connection
		})
	}
}

// TestUpstreamUnsolicitedBytes: bytes the app sends past its answer, at
// once or later while the connection is idle (an unasked-for 408), are
// never read as the next request's answer.
func TestUpstreamUnsolicitedBytes(t *testing.T) {
	const junk = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 4\r\n\r\njunk"
	tests := []struct {
		name  string
		later bool // sent after the client read the answer, not with it
	}{
		{"with the answer", false},
		{"while idle", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var conns atomic.Int32
			readAnswer, sentJunk := make(chan struct{}), make(chan struct{})
			addr := rawApp(t, func(c net.Conn) {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				if conns.Add(1) > 1 {
					for {
						if _, _, ok := readFullRequest(br); !ok {
							return
						}
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")
					}
				}
				if _, _, ok := readFullRequest(br); !ok {
					return
				}
				if !tt.later {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"+junk)
					close(sentJunk)
				} else {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
					<-readAnswer
					io.WriteString(c, junk) // on loopback it is in the proxy's socket once written
					close(sentJunk)
				}
				io.Copy(io.Discard, br)
			})
			u := upstreamFor(t, addr, nil)
			for i, want := range []string{"first", "fresh"} {
				res, err := u.RoundTrip(newUpstreamRequest(t, "GET", addr, nil))
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != 200 || string(body) != want {
					t.Errorf("request %d answered %d %q, want 200 %q", i, res.StatusCode, body, want)
				}
				if i == 0 {
					close(readAnswer)
					select {
					case <-sentJunk:
					case <-time.After(5 * time.Second):
						t.Fatal("the app did not send its junk")
					}
				}
			}
		})
	}
}

// TestUpstreamCancel: cancelling the request unblocks the wait for the
// head and a read of the body, and the connection is dropped.
func TestUpstreamCancel(t *testing.T) {
	tests := []struct {
		name  string
		reply string        // sent before the app stalls
		after time.Duration // how long the exchange runs before the cancel
	}{
		{"waiting for the head", "", 0},
		{"reading the body", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart", 0},
		// Past cancelDelay the cancellation is already being watched.
		{"waiting for the head, cancelled late", "", 2 * cancelDelay},
		{"reading the body, cancelled late", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart", 2 * cancelDelay},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gone := make(chan struct{}, 1)
			entered := make(chan struct{}, 1)
			addr := rawApp(t, func(c net.Conn) {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				if _, ok := readRequestHead(br); !ok {
					return
				}
				io.WriteString(c, tt.reply)
				entered <- struct{}{}
				// EOF, or a reset when the proxy closed with the answer unread;
				// the 10 s deadline is past the test's 5 s wait.
				if _, err := br.ReadByte(); err != nil {
					gone <- struct{}{}
				}
			})
			u := upstreamFor(t, addr, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req := newUpstreamRequest(t, "GET", addr, nil).WithContext(ctx)
			done := make(chan error, 1)
			go func() {
				res, err := u.RoundTrip(req)
				if err == nil {
					_, err = io.ReadAll(res.Body)
					res.Body.Close()
				}
				done <- err
			}()
			select {
			case <-entered:
			case <-time.After(5 * time.Second):
				t.Fatal("the request never reached the app")
			}
			time.Sleep(tt.after)
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("error after cancel = %v, want context.Canceled", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("cancelling did not unblock the request")
			}
			select {
			case <-gone:
			case <-time.After(5 * time.Second):
				t.Error("the app's connection was not closed")
			}
			if got := u.idleCount(addr); got != 0 {
				t.Errorf("%d idle connections after a cancel, want 0", got)
			}
		})
	}
}

// TestUpdateResizesPool: a reload's keepalive applies to the running pool:
// a smaller bound closes the oldest idle connections at once, no pooling
// sends Connection: close, and a larger bound keeps more.
func TestUpdateResizesPool(t *testing.T) {
	var mu sync.Mutex
	arrived, closes := 0, 0
	release := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived++
		if r.Close {
			closes++
		}
		mu.Unlock()
		if r.URL.Path == "/wait" {
			<-release
		}
	}))
	t.Cleanup(app.Close)
	p, _ := newTestProxy(t, hostOf(app), func(o *Options) { o.KeepAlive = 4 })
	key := p.targets.Load().list[0].urlHost
	// n requests at once, so that n connections are open, then pooled.
	burst := func(n int) {
		t.Helper()
		mu.Lock()
		arrived = 0
		mu.Unlock()
		release = make(chan struct{})
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://site.example/wait", nil))
			}()
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			in := arrived
			mu.Unlock()
			if in == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d requests reached the app", in, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
		close(release)
		wg.Wait()
	}

	burst(4)
	if got := p.upstream.idleCount(key); got != 4 {
		t.Fatalf("after 4 requests at once: %d idle, want 4", got)
	}
	o := *p.o()
	o.KeepAlive = 1
	p.Update(o)
	if got := p.upstream.idleCount(key); got != 1 {
		t.Errorf("after Update to keepalive 1: %d idle, want 1", got)
	}
	o.KeepAlive = 8
	p.Update(o)
	burst(8)
	if got := p.upstream.idleCount(key); got != 8 {
		t.Errorf("after Update to keepalive 8 and 8 requests at once: %d idle, want 8", got)
	}
	o.KeepAlive = -1
	p.Update(o)
	if got := p.upstream.idleCount(key); got != 0 {
		t.Errorf("after Update to no pooling: %d idle, want 0", got)
	}
	p.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://site.example/", nil))
	mu.Lock()
	defer mu.Unlock()
	if closes != 1 {
		t.Errorf("without pooling the request carried Connection: close %d times, want 1", closes)
	}
}
