package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// cannedApp is an app that answers every request on a connection with
// answer(request), closing the connection after it when close is set. It
// counts its connections.
func cannedApp(t *testing.T, answer func(req *http.Request) (reply string, close bool)) (addr string, conns *atomic.Int32) {
	t.Helper()
	conns = new(atomic.Int32)
	addr = rawApp(t, func(c net.Conn) {
		conns.Add(1)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for range 100 {
			req, _, ok := readFullRequest(br)
			if !ok {
				return
			}
			reply, closeAfter := answer(req)
			if _, err := io.WriteString(c, reply); err != nil || closeAfter {
				return
			}
		}
	})
	return addr, conns
}

// upstreamFor returns the upstream client of a test Proxy to addr.
func upstreamFor(t *testing.T, addr string, mod func(*Options)) *upstream {
	t.Helper()
	p, _ := newTestProxy(t, addr, mod)
	return p.upstream
}

func newUpstreamRequest(t *testing.T, method, addr string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+"/path?q=1", body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// waitFor polls cond for up to 5 s and reports whether it became true.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

func TestUpstreamResponseFraming(t *testing.T) {
	tests := []struct {
		name        string
		method      string
		reply       string
		closeAfter  bool
		wantStatus  int
		wantBody    string
		wantLength  int64
		wantTE      []string
		wantTrailer http.Header
		wantHeader  http.Header // a subset of the answer's header
		wantPooled  bool
	}{
		{"content-length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false,
			200, "hello", 5, nil, nil, http.Header{"Content-Length": {"5"}}, true},
		{"chunked with trailers", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum, X-Count\r\n\r\n" +
			"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: abc\r\nx-count: 2\r\n\r\n", false,
			200, "hello world", -1, []string{"chunked"}, http.Header{"X-Sum": {"abc"}, "X-Count": {"2"}}, nil, true},
		{"chunked without trailer", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false,
			200, "ok", -1, []string{"chunked"}, nil, nil, true},
		{"until close", "GET", "HTTP/1.1 200 OK\r\n\r\nthe rest of the stream", true,
			200, "the rest of the stream", -1, nil, nil, nil, false},
		{"head with a length", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", false,
			200, "", 100, nil, nil, http.Header{"Content-Length": {"100"}}, true},
		{"no content", "GET", "HTTP/1.1 204 No Content\r\n\r\n", false, 204, "", 0, nil, nil, nil, true},
		{"not modified with a length", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false,
			304, "", 0, nil, nil, nil, true},
		{"empty body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, 200, "", 0, nil, nil, nil, true},
		{"connection close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", true,
			200, "ok", 2, nil, nil, nil, false},
		{"http/1.0 without keep-alive", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", true,
			200, "ok", 2, nil, nil, nil, false},
		{"http/1.0 keep-alive", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", false,
			200, "ok", 2, nil, nil, nil, true},
		{"lowercase and repeated fields", "GET", "HTTP/1.1 201 Created\r\ncontent-length: 2\r\nx-app: a\r\nX-APP:  b \r\nset-cookie: c=1\r\n\r\nok", false,
			201, "ok", 2, nil, nil, http.Header{"X-App": {"a", "b"}, "Set-Cookie": {"c=1"}}, true},
		{"repeated equal lengths", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", false,
			200, "ok", 2, nil, nil, http.Header{"Content-Length": {"2"}}, true},
		{"bare line feeds", "GET", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", false, 200, "ok", 2, nil, nil, nil, true},
		{"100 continue skipped", "GET", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false,
			200, "ok", 2, nil, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := cannedApp(t, func(*http.Request) (string, bool) { return tt.reply, tt.closeAfter })
			u := upstreamFor(t, addr, nil)
			res, err := u.RoundTrip(newUpstreamRequest(t, tt.method, addr, nil))
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil {
				t.Errorf("reading the body: %v", err)
			}
			if res.StatusCode != tt.wantStatus || string(body) != tt.wantBody {
				t.Errorf("answer = %d %q, want %d %q", res.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if res.ContentLength != tt.wantLength || !reflect.DeepEqual(res.TransferEncoding, tt.wantTE) {
				t.Errorf("ContentLength, TransferEncoding = %d, %q; want %d, %q", res.ContentLength, res.TransferEncoding, tt.wantLength, tt.wantTE)
			}
			if !reflect.DeepEqual(res.Trailer, tt.wantTrailer) {
				t.Errorf("Trailer = %v, want %v", res.Trailer, tt.wantTrailer)
			}
			for k, want := range tt.wantHeader {
				if got := res.Header[k]; !reflect.DeepEqual(got, want) {
					t.Errorf("Header[%q] = %q, want %q", k, got, want)
				}
			}
			for _, k := range []string{"Transfer-Encoding", "Trailer"} {
				if v, ok := res.Header[k]; ok {
					t.Errorf("Header[%q] = %q, want it taken into the framing", k, v)
				}
			}
			if res.Close == tt.wantPooled || res.Uncompressed || res.ProtoMajor != 1 || res.Request == nil {
				t.Errorf("Close %v, Uncompressed %v, ProtoMajor %d, Request %v; want Close %v, not uncompressed, 1, set",
					res.Close, res.Uncompressed, res.ProtoMajor, res.Request, !tt.wantPooled)
			}
			want := 0
			if tt.wantPooled {
				want = 1
			}
			if got := u.idleCount(addr); got != want {
				t.Errorf("%d idle connections after the answer, want %d", got, want)
			}
		})
	}
}

func TestUpstreamMalformedAnswers(t *testing.T) {
	tests := []struct {
		name  string
		reply string
	}{
		{"not http", "SPDY/9 what\r\n\r\n"},
		{"http/2 status line", "HTTP/2.0 200 OK\r\n\r\n"},
		{"no status code", "HTTP/1.1\r\n\r\n"},
		{"two-digit status", "HTTP/1.1 20 OK\r\n\r\n"},
		{"status below 100", "HTTP/1.1 099 Odd\r\n\r\n"},
		{"letters in status", "HTTP/1.1 2x0 OK\r\n\r\n"},
		{"length and chunked", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
		{"invalid length", "HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok"},
		{"negative length", "HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok"},
		{"empty length", "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nok"},
		{"different lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"},
		{"unknown coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok"},
		{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok"},
		{"folded line", "HTTP/1.1 200 OK\r\nX-A: 1\r\n  2\r\nContent-Length: 2\r\n\r\nok"},
		{"no colon", "HTTP/1.1 200 OK\r\nX-A\r\n\r\n"},
		{"control byte in value", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok"},
		{"head too large", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", maxResponseHeaderBytes) + "\r\n\r\n"},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n"},
		{"forbidden trailer key", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := cannedApp(t, func(*http.Request) (string, bool) { return tt.reply, true })
			u := upstreamFor(t, addr, nil)
			res, err := u.RoundTrip(newUpstreamRequest(t, "GET", addr, nil))
			if err == nil {
				_, err = io.ReadAll(res.Body) // a bad chunk fails the body
				res.Body.Close()
			}
			if err == nil {
				t.Fatalf("RoundTrip of %q: no error, want one", tt.reply)
			}
			if got := kindOf(err); got != kindOther {
				t.Errorf("kindOf(%v) = %q, want %q", err, got, kindOther)
			}
			if got := u.idleCount(addr); got != 0 {
				t.Errorf("%d connections pooled after a malformed answer, want 0", got)
			}
		})
	}
}

// TestUpstreamRequestWriting checks what reaches the app for each kind of
// request, against what net/http would send.
func TestUpstreamRequestWriting(t *testing.T) {
	type seen struct {
		head    string
		body    string
		trailer http.Header
	}
	seenc := make(chan seen, 1)
	addr := rawApp(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		var raw strings.Builder
		req, err := http.ReadRequest(bufio.NewReader(io.TeeReader(c, &raw)))
		if err != nil {
			return
		}
		b, _ := io.ReadAll(req.Body)
		head, _, _ := strings.Cut(raw.String(), "\r\n\r\n")
		seenc <- seen{head: head, body: string(b), trailer: req.Trailer}
		io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
	})
	tests := []struct {
		name        string
		req         func() *http.Request
		keepAlive   int
		wantLines   []string // lines the head must have
		wantMissing []string // field names it must not have
		wantBody    string
		wantTrailer http.Header
	}{
		{"get", func() *http.Request {
			r := newUpstreamRequest(t, "GET", addr, nil)
			r.Host = "shop.example"
			r.Header.Set("User-Agent", "")
			r.Header.Set("X-Multi", "a\r\nb")
			return r
		}, 0, []string{"GET /path?q=1 HTTP/1.1", "Host: shop.example", "X-Multi: a  b"},
			[]string{"User-Agent", "Content-Length", "Transfer-Encoding", "Connection"}, "", nil},
		{"user agent kept", func() *http.Request {
			r := newUpstreamRequest(t, "GET", addr, nil)
			r.Header.Set("User-Agent", "curl/8")
			return r
		}, 0, []string{"User-Agent: curl/8", "Host: " + addr}, []string{"Content-Length"}, "", nil},
		{"post without body", func() *http.Request { return newUpstreamRequest(t, "POST", addr, http.NoBody) }, 0,
			[]string{"POST /path?q=1 HTTP/1.1", "Content-Length: 0"}, []string{"Transfer-Encoding"}, "", nil},
		{"delete without body", func() *http.Request { return newUpstreamRequest(t, "DELETE", addr, nil) }, 0,
			nil, []string{"Content-Length", "Transfer-Encoding"}, "", nil},
		{"post with length", func() *http.Request { return newUpstreamRequest(t, "POST", addr, strings.NewReader("hello")) }, 0,
			[]string{"Content-Length: 5"}, []string{"Transfer-Encoding"}, "hello", nil},
		{"chunked with trailer", func() *http.Request {
			r := newUpstreamRequest(t, "PUT", addr, io.NopCloser(strings.NewReader("streamed")))
			r.ContentLength = -1
			r.Trailer = http.Header{"X-Sum": {"s1"}}
			return r
		}, 0, []string{"Transfer-Encoding: chunked", "Trailer: X-Sum"}, []string{"Content-Length"}, "streamed", http.Header{"X-Sum": {"s1"}}},
		{"no pooling asks to close", func() *http.Request { return newUpstreamRequest(t, "GET", addr, nil) }, -1,
			[]string{"Connection: close"}, nil, "", nil},
		{"upgrade without pooling is not closed", func() *http.Request {
			r := newUpstreamRequest(t, "GET", addr, nil)
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
			return r
		}, -1, []string{"Connection: Upgrade", "Upgrade: websocket"}, nil, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := upstreamFor(t, addr, func(o *Options) { o.KeepAlive = tt.keepAlive })
			res, err := u.RoundTrip(tt.req())
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			res.Body.Close()
			var s seen
			select {
			case s = <-seenc:
			case <-time.After(5 * time.Second):
				t.Fatal("the app reported no request")
			}
			lines := strings.Split(s.head, "\r\n")
			for _, want := range tt.wantLines {
				if !contains(lines, want) {
					t.Errorf("head %q lacks the line %q", s.head, want)
				}
			}
			for _, name := range tt.wantMissing {
				for _, l := range lines {
					if strings.HasPrefix(strings.ToLower(l), strings.ToLower(name)+":") {
						t.Errorf("head has %q, want no %s", l, name)
					}
				}
			}
			if s.body != tt.wantBody || !reflect.DeepEqual(s.trailer, tt.wantTrailer) {
				t.Errorf("the app got body %q, trailer %v; want %q, %v", s.body, s.trailer, tt.wantBody, tt.wantTrailer)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestUpstreamInformational: a 103 reaches the client through ReverseProxy
// before the final answer; a 100 does not.
func TestUpstreamInformational(t *testing.T) {
	tests := []struct {
		name     string
		reply    string
		want1xx  []int
		wantLink string
	}{
		{"early hints forwarded", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", []int{103}, "</a.css>; rel=preload"},
		{"two early hints", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </b.js>\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", []int{103, 103}, "</a.css>"},
		{"continue swallowed", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := cannedApp(t, func(*http.Request) (string, bool) { return tt.reply, false })
			p, _ := newTestProxy(t, addr, nil)
			front := httptest.NewServer(p)
			t.Cleanup(front.Close)
			var got []int
			var link string
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				got = append(got, code)
				if link == "" {
					link = h.Get("Link")
				}
				return nil
			}}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", front.URL, nil)
			res, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || string(body) != "ok" {
				t.Errorf("final answer = %d %q, want 200 %q", res.StatusCode, body, "ok")
			}
			if !reflect.DeepEqual(got, tt.want1xx) || link != tt.wantLink {
				t.Errorf("client saw 1xx %v with Link %q, want %v with %q", got, link, tt.want1xx, tt.wantLink)
			}
		})
	}
}

// TestUpstreamSwitchingProtocols: a 101's body is the raw connection, bytes
// the app sent with the head first, and it never returns to the pool.
func TestUpstreamSwitchingProtocols(t *testing.T) {
	addr := rawApp(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		if _, ok := readRequestHead(br); !ok {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nhello\n")
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				io.WriteString(c, "bye\n") // after the client's half-close
				return
			}
			io.WriteString(c, "echo "+line)
		}
	})
	u := upstreamFor(t, addr, nil)
	req := newUpstreamRequest(t, "GET", addr, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "test")
	res, err := u.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	rwc, ok := res.Body.(io.ReadWriteCloser)
	if res.StatusCode != 101 || !ok {
		t.Fatalf("answer %d with body %T, want 101 with an io.ReadWriteCloser", res.StatusCode, res.Body)
	}
	defer rwc.Close()
	br := bufio.NewReader(rwc)
	if line, err := br.ReadString('\n'); line != "hello\n" || err != nil {
		t.Errorf("first line = %q, %v; want the buffered %q", line, err, "hello\n")
	}
	io.WriteString(rwc, "ping\n")
	if line, err := br.ReadString('\n'); line != "echo ping\n" || err != nil {
		t.Errorf("echo = %q, %v; want %q", line, err, "echo ping\n")
	}
	cw, ok := rwc.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("the 101 body %T has no CloseWrite", rwc)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Errorf("CloseWrite: %v", err)
	}
	if rest, err := io.ReadAll(br); string(rest) != "bye\n" || err != nil {
		t.Errorf("after the half-close: %q, %v; want %q then the end", rest, err, "bye\n")
	}
	if got := u.idleCount(addr); got != 0 {
		t.Errorf("%d idle connections after an upgrade, want 0", got)
	}
}

// TestUpstreamAnswerBeforeBody: the app answers before it read the request
// body; the answer arrives while the body is still being sent.
func TestUpstreamAnswerBeforeBody(t *testing.T) {
	tests := []struct {
		name       string
		reply      string
		wantStatus int
		wantPooled bool
	}{
		{"refused with close", "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbig", 413, false},
		{"answered, body sent later", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bodyDone := make(chan string, 1)
			addr := rawApp(t, func(c net.Conn) {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				req, ok := readRequestHead(br)
				if !ok {
					return
				}
				io.WriteString(c, tt.reply)
				b, _ := io.ReadAll(req.Body) // the rest of the body, if it comes
				bodyDone <- string(b)
				readRequestHead(br) // stay open for the next request, if any
			})
			u := upstreamFor(t, addr, nil)
			pr, pw := io.Pipe()
			t.Cleanup(func() { pw.CloseWithError(errors.New("test over")) })
			req := newUpstreamRequest(t, "POST", addr, pr)
			req.ContentLength = -1
			go pw.Write([]byte("first part "))
			res, err := u.RoundTrip(req) // returns though the body is unfinished
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || res.StatusCode != tt.wantStatus {
				t.Errorf("early answer = %d %q, %v; want %d", res.StatusCode, body, err, tt.wantStatus)
			}
			pw.Write([]byte("second part"))
			pw.Close()
			if !tt.wantPooled {
				return
			}
			select {
			case got := <-bodyDone:
				if got != "first part second part" {
					t.Errorf("the app got the body %q, want it whole", got)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the app never got the end of the body")
			}
			if !waitFor(func() bool { return u.idleCount(addr) == 1 }) {
				t.Errorf("the connection was not pooled once the body went out")
			}
		})
	}
}

func BenchmarkUpstreamRoundTrip(b *testing.B) {
	addr := rawApp(b, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\nserver: uvicorn\r\n\r\nok")
		}
	})
	p, _ := newTestProxy(b, addr, nil)
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Header.Set("User-Agent", "")
	b.ReportAllocs()
	for b.Loop() {
		res, err := p.upstream.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}

// BenchmarkProxyParallel is the proxy under the issue-7 load shape: 50
// concurrent keep-alive requests, each with a cancellable context as from
// a server. Compare CPU (perf stat task-clock, or -cpuprofile), not only
// ns/op: the one-at-a-time BenchmarkProxyLoopback is latency-bound.
func BenchmarkProxyParallel(b *testing.B) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	b.Cleanup(app.Close)
	p, _ := newTestProxy(b, hostOf(app), func(o *Options) { o.KeepAlive = 64 })
	b.SetParallelism(25) // × GOMAXPROCS 2 = 50
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ctx, cancel := context.WithCancel(context.Background())
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil).WithContext(ctx))
			cancel()
			if rec.Code != 200 {
				b.Errorf("status %d", rec.Code)
			}
		}
	})
}
