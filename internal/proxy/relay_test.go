package proxy

// Tests of the answer the client gets through relay. They were written
// against httputil.ReverseProxy, and passed on it, before relay replaced
// it: they pin the client-visible behaviour relay keeps: which headers
// cross in each direction, trailers, 1xx answers, flushing, HEAD, an answer
// cut off mid-body, a mismatched protocol switch, empty bodies, request
// targets and repeated fields.

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawDeadline bounds every read and write of the raw connections below,
// so a test that waits for bytes that never come fails instead of hanging.
const rawDeadline = 10 * time.Second

// frontFor serves h on a loopback httptest server, as the client-facing
// server, closed at the end of the test.
func frontFor(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	front := httptest.NewServer(h)
	t.Cleanup(front.Close)
	return front
}

// dialFront opens a raw client connection to front, with rawDeadline on
// it, closed at the end of the test.
func dialFront(t *testing.T, front *httptest.Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", hostOf(front))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(rawDeadline))
	return c, bufio.NewReader(c)
}

// rawRoundTrip writes the raw request head to c and reads the answer,
// parsed for method.
func rawRoundTrip(t *testing.T, c net.Conn, br *bufio.Reader, method, head string) *http.Response {
	t.Helper()
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatalf("writing %q: %v", head, err)
	}
	res, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", head, err)
	}
	return res
}

// trackedApp is rawApp whose connections get rawDeadline and are closed,
// and their goroutines awaited, at the end of the test, so an app that
// blocks cannot outlive it.
func trackedApp(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	var (
		mu     sync.Mutex
		conns  []net.Conn
		wg     sync.WaitGroup
		closed bool
	)
	addr := rawApp(t, func(c net.Conn) {
		mu.Lock()
		if closed {
			mu.Unlock()
			return
		}
		conns = append(conns, c)
		wg.Add(1)
		mu.Unlock()
		defer wg.Done()
		c.SetDeadline(time.Now().Add(rawDeadline))
		serve(c)
	})
	t.Cleanup(func() { // runs before rawApp's, which closes the listener
		mu.Lock()
		closed = true
		all := conns
		mu.Unlock()
		for _, c := range all {
			c.Close()
		}
		wg.Wait()
	})
	return addr
}

// headRecordingApp is an app that answers every request on a connection
// with 200 "ok" and sends each request head it reads on the channel, or
// nil for one it could not parse. It ignores the request bodies.
func headRecordingApp(t *testing.T) (<-chan *http.Request, string) {
	t.Helper()
	heads := make(chan *http.Request, 4)
	addr := trackedApp(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for range 10 {
			req, err := http.ReadRequest(br)
			if err == io.EOF {
				return // the proxy closed an idle connection
			}
			if err != nil {
				heads <- nil
				return
			}
			heads <- req
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	return heads, addr
}

// withTimingReason wraps h so that each request carries a Timing, whose
// Reason is sent on the returned channel when h ends, a panic included.
func withTimingReason(h http.Handler) (http.Handler, <-chan string) {
	reasons := make(chan string, 16)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, tm := WithTiming(r.Context())
		defer func() { reasons <- tm.Reason() }()
		h.ServeHTTP(w, r.WithContext(ctx))
	}), reasons
}

// waitOrTimeout waits for a value on ch for at most rawDeadline.
func waitOrTimeout[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(rawDeadline):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// TestResponseHopByHopHeadersDropped pins which of the app's response
// headers the proxy hands to the client-facing writer: the hop-by-hop ones
// (the RFC 7230 list, Proxy-Authenticate included, Upgrade on a non-101
// answer, and every field named in the app's Connection header, in any
// case) are dropped; the framing fields Transfer-Encoding and Trailer are
// not copied; end-to-end fields pass with every value in order. It fails
// if any dropped field reaches the writer or any kept value is lost,
// joined or reordered.
func TestResponseHopByHopHeadersDropped(t *testing.T) {
	tests := []struct {
		name     string
		reply    string
		wantBody string
		dropped  []string
		kept     http.Header
	}{
		{"content-length answer",
			"HTTP/1.1 200 OK\r\n" +
				"Connection: keep-alive, x-internal\r\n" +
				"Connection: X-Other\r\n" +
				"Keep-Alive: timeout=5\r\n" +
				"Proxy-Connection: keep-alive\r\n" +
				"Proxy-Authenticate: Basic realm=app\r\n" +
				"Upgrade: h2c\r\n" +
				"Te: trailers\r\n" +
				"X-Internal: secret\r\n" +
				"X-Other: secret too\r\n" +
				"Content-Type: text/plain; charset=utf-8\r\n" +
				"Set-Cookie: a=1; Path=/\r\n" +
				"Set-Cookie: b=2; HttpOnly\r\n" +
				"Cache-Control: no-cache\r\n" +
				"Cache-Control: private\r\n" +
				"X-App: one\r\n" +
				"X-App: two, three\r\n" +
				"Content-Length: 2\r\n\r\nok",
			"ok",
			[]string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Upgrade", "Te", "X-Internal", "X-Other", "Transfer-Encoding", "Trailer"},
			http.Header{
				"Content-Type":   {"text/plain; charset=utf-8"},
				"Set-Cookie":     {"a=1; Path=/", "b=2; HttpOnly"},
				"Cache-Control":  {"no-cache", "private"},
				"X-App":          {"one", "two, three"},
				"Content-Length": {"2"},
			}},
		{"chunked answer without trailer",
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\nX-App: kept\r\n\r\n" +
				"2\r\nok\r\n0\r\n\r\n",
			"ok",
			[]string{"Transfer-Encoding", "Trailer", "Content-Length"},
			http.Header{"Content-Type": {"text/plain"}, "X-App": {"kept"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := cannedApp(t, func(*http.Request) (string, bool) { return tt.reply, false })
			p, _ := newTestProxy(t, addr, nil)
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			if rec.Code != 200 || rec.Body.String() != tt.wantBody {
				t.Fatalf("answer = %d %q, want 200 %q", rec.Code, rec.Body.String(), tt.wantBody)
			}
			for _, k := range tt.dropped {
				if v, ok := rec.Header()[k]; ok {
					t.Errorf("%s reached the client as %q, want it dropped", k, v)
				}
			}
			for k, want := range tt.kept {
				if got := rec.Header()[k]; !reflect.DeepEqual(got, want) {
					t.Errorf("%s at the client = %q, want %q", k, got, want)
				}
			}
		})
	}
}

// TestRequestHopByHopAndUserAgent pins what the app gets of the client's
// TE, Connection and User-Agent: "trailers" in TE reaches it as exactly
// "Te: trailers" (other codings dropped); TE without it does not reach it;
// fields named in Connection do not reach it; User-Agent is passed as sent
// and none is made up (not Go's) when the client sent none. It fails on
// any other Te, a leaked hop-by-hop field, or a wrong User-Agent.
func TestRequestHopByHopAndUserAgent(t *testing.T) {
	tests := []struct {
		name   string
		header http.Header
		want   http.Header // nil value: the field must be absent
	}{
		{"te trailers", http.Header{"Te": {"trailers"}}, http.Header{"Te": {"trailers"}}},
		{"te gzip and trailers", http.Header{"Te": {"gzip;q=0.5, trailers"}}, http.Header{"Te": {"trailers"}}},
		{"te gzip", http.Header{"Te": {"gzip"}}, http.Header{"Te": nil}},
		{"connection tokens", http.Header{"Connection": {"x-hop, X-Other"}, "X-Hop": {"1"}, "X-Other": {"2"}, "X-Kept": {"3"}},
			http.Header{"X-Hop": nil, "X-Other": nil, "Connection": nil, "X-Kept": {"3"}}},
		{"no user agent", http.Header{}, http.Header{"User-Agent": nil}},
		{"user agent", http.Header{"User-Agent": {"curl/8.5.0"}}, http.Header{"User-Agent": {"curl/8.5.0"}}},
	}
	app := echoApp(t)
	p, _ := newTestProxy(t, hostOf(app), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/", nil)
			req.Header = tt.header
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, req)
			e := decodeEcho(t, rec)
			for k, want := range tt.want {
				got, ok := e.Header[k]
				if want == nil && ok {
					t.Errorf("%s reached the app as %q, want it absent", k, got)
				}
				if want != nil && !reflect.DeepEqual(got, want) {
					t.Errorf("%s at the app = %q, want %q", k, got, want)
				}
			}
		})
	}
}

// TestResponseTrailersReachTheClient pins trailers end to end through a
// real client: an announced trailer is announced to the client before the
// body and arrives after it; trailer fields the app did not announce (with
// or without a Trailer header) arrive too. It fails if a trailer is lost
// or its value changed.
func TestResponseTrailersReachTheClient(t *testing.T) {
	tests := []struct {
		name          string
		reply         string
		wantAnnounced []string // keys of res.Trailer before the body is read
		wantTrailer   http.Header
	}{
		{"announced", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
			"2\r\nok\r\n0\r\nX-Sum: 42\r\n\r\n",
			[]string{"X-Sum"}, http.Header{"X-Sum": {"42"}}},
		{"one announced, one not", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
			"2\r\nok\r\n0\r\nX-Sum: 42\r\nX-Extra: e\r\n\r\n",
			[]string{"X-Sum"}, http.Header{"X-Sum": {"42"}, "X-Extra": {"e"}}},
		{"none announced", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"2\r\nok\r\n0\r\nX-Sum: 42\r\n\r\n",
			nil, http.Header{"X-Sum": {"42"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := cannedApp(t, func(*http.Request) (string, bool) { return tt.reply, false })
			p, _ := newTestProxy(t, addr, nil)
			front := frontFor(t, p)
			res, err := front.Client().Get(front.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var announced []string
			for k := range res.Trailer {
				announced = append(announced, k)
			}
			if !reflect.DeepEqual(announced, tt.wantAnnounced) {
				t.Errorf("trailers announced to the client = %q, want %q", announced, tt.wantAnnounced)
			}
			body, err := io.ReadAll(res.Body)
			if err != nil || string(body) != "ok" {
				t.Fatalf("body = %q, %v; want %q", body, err, "ok")
			}
			if !reflect.DeepEqual(res.Trailer, tt.wantTrailer) {
				t.Errorf("trailer at the client = %v, want %v", res.Trailer, tt.wantTrailer)
			}
		})
	}
}

// TestEarlyHintsOnTheWire pins, on the client's wire, a 103 the app sends
// before its 200: the 103 arrives first with its Link, and its fields are
// not carried into the final answer. (TestUpstreamInformational checks the
// 103 through a client trace.) It fails if the 103 is lost or its Link
// leaks into the 200.
func TestEarlyHintsOnTheWire(t *testing.T) {
	addr, _ := cannedApp(t, func(*http.Request) (string, bool) {
		return "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok", false
	})
	p, _ := newTestProxy(t, addr, nil)
	c, br := dialFront(t, frontFor(t, p))
	hints := rawRoundTrip(t, c, br, "GET", "GET /page HTTP/1.1\r\nHost: site.example\r\n\r\n")
	if hints.StatusCode != http.StatusEarlyHints || hints.Header.Get("Link") != "</a.css>; rel=preload" {
		t.Fatalf("first answer = %d with Link %q, want 103 with the app's Link", hints.StatusCode, hints.Header.Get("Link"))
	}
	final, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("reading the final answer: %v", err)
	}
	body, err := io.ReadAll(final.Body)
	if final.StatusCode != 200 || string(body) != "ok" || err != nil {
		t.Errorf("final answer = %d %q, %v; want 200 %q", final.StatusCode, body, err, "ok")
	}
	if v, ok := final.Header["Link"]; ok {
		t.Errorf("the 103's Link was carried into the final answer: %q", v)
	}
}

// TestUntilCloseAnswerFlushedAtOnce pins flushing of an answer the app
// delimits by closing the connection (no length, not chunked): its first
// part reaches the client while the app still holds the rest back, and
// the whole arrives in the end. (TestStreamsFlushAtOnce covers SSE and
// chunked answers.) It fails if the first part waits for the rest: the
// read then meets rawDeadline while the app is blocked.
func TestUntilCloseAnswerFlushedAtOnce(t *testing.T) {
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	addr := trackedApp(t, func(c net.Conn) {
		if _, ok := readRequestHead(bufio.NewReader(c)); !ok {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\nfirst part\n")
		<-release
		io.WriteString(c, "the rest\n")
	})
	p, _ := newTestProxy(t, addr, nil)
	front := frontFor(t, p)
	t.Cleanup(releaseOnce) // before front.Close, which waits for the handler
	c, br := dialFront(t, front)
	res := rawRoundTrip(t, c, br, "GET", "GET /stream HTTP/1.1\r\nHost: site.example\r\n\r\n")
	first := make([]byte, len("first part\n"))
	if _, err := io.ReadFull(res.Body, first); err != nil {
		t.Fatalf("reading the first part while the app holds the rest: %v", err)
	}
	releaseOnce()
	rest, err := io.ReadAll(res.Body)
	if string(first)+string(rest) != "first part\nthe rest\n" || err != nil {
		t.Errorf("body = %q, %v; want %q", string(first)+string(rest), err, "first part\nthe rest\n")
	}
}

// TestContentLengthAnswerArrivesWhole pins an answer with a length that
// the app sends in two parts with a pause between: the client gets it
// whole, with the app's Content-Length and not re-chunked. It fails if the
// length is dropped, the framing changes or a byte is lost.
func TestContentLengthAnswerArrivesWhole(t *testing.T) {
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	sentFirst := make(chan struct{}, 1)
	addr := trackedApp(t, func(c net.Conn) {
		if _, ok := readRequestHead(bufio.NewReader(c)); !ok {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nhello")
		sentFirst <- struct{}{}
		<-release
		io.WriteString(c, "world")
	})
	p, _ := newTestProxy(t, addr, nil)
	front := frontFor(t, p)
	t.Cleanup(releaseOnce)
	// The client sees nothing before the app's second part (a small answer
	// with a length is not flushed early), so the pause ends as soon as the
	// app has sent the first.
	go func() {
		select {
		case <-sentFirst:
		case <-release:
		}
		releaseOnce()
	}()
	c, br := dialFront(t, front)
	res := rawRoundTrip(t, c, br, "GET", "GET /file HTTP/1.1\r\nHost: site.example\r\n\r\n")
	body, err := io.ReadAll(res.Body)
	if res.StatusCode != 200 || string(body) != "helloworld" || err != nil {
		t.Errorf("answer = %d %q, %v; want 200 %q", res.StatusCode, body, err, "helloworld")
	}
	if res.ContentLength != 10 || res.TransferEncoding != nil {
		t.Errorf("framing at the client: Content-Length %d, Transfer-Encoding %q; want 10 and none", res.ContentLength, res.TransferEncoding)
	}
}

// TestHeadAnswer pins HEAD on the client's wire: the client gets the
// app's Content-Length (not 0, not dropped) and no body, so the next
// answer on the same connection parses. It fails on a wrong length or any
// body byte after the HEAD answer's head.
func TestHeadAnswer(t *testing.T) {
	addr, _ := cannedApp(t, func(req *http.Request) (string, bool) {
		if req.Method == http.MethodHead {
			return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n", false
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext", false
	})
	p, _ := newTestProxy(t, addr, nil)
	c, br := dialFront(t, frontFor(t, p))
	head := rawRoundTrip(t, c, br, "HEAD", "HEAD /big HTTP/1.1\r\nHost: site.example\r\n\r\n")
	if head.StatusCode != 200 || head.Header.Get("Content-Length") != "100" || head.ContentLength != 100 {
		t.Errorf("HEAD answer = %d with Content-Length %q, want 200 with the app's 100", head.StatusCode, head.Header.Get("Content-Length"))
	}
	next := rawRoundTrip(t, c, br, "GET", "GET /next HTTP/1.1\r\nHost: site.example\r\n\r\n")
	body, err := io.ReadAll(next.Body)
	if next.StatusCode != 200 || string(body) != "next" || err != nil {
		t.Errorf("answer after the HEAD = %d %q, %v; want 200 %q (a body after the HEAD head would garble it)", next.StatusCode, body, err, "next")
	}
}

// TestAnswerCutOffMidBody pins an app that closes its connection in the
// middle of its body: the client never gets a clean short answer. Today
// net/http's server recovers ReverseProxy's panic(http.ErrAbortHandler)
// and drops the connection, so a client whose head was already sent fails
// reading the body, and one whose head was still buffered (a small part
// of a Content-Length body sent) gets no answer at all. For a chunked
// answer the abort is what tells the client: without it the server would
// end the chunked body cleanly. The failure is counted as a reset and
// becomes the request's Timing reason. It fails if the client reads a
// short body without error, or if the failure is not counted.
func TestAnswerCutOffMidBody(t *testing.T) {
	tests := []struct {
		name       string
		reply      string
		sent       int   // body bytes in reply
		wantLength int64 // Content-Length at the client, when the head arrives
		headSent   bool  // the head must reach the client before the cut
	}{
		{"length, small part sent", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("x", 10),
			10, 100, false},
		{"length, large part sent", "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("x", 40000),
			40000, 100000, true}, // overflows the server's buffers: the head left before the cut
		{"chunked, part sent", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
			5, -1, true}, // an unknown length is flushed at once
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := cannedApp(t, func(*http.Request) (string, bool) { return tt.reply, true })
			p, set := newTestProxy(t, addr, nil)
			h, reasons := withTimingReason(p)
			front := frontFor(t, h)
			res, err := front.Client().Get(front.URL)
			switch {
			case err != nil && tt.headSent:
				t.Fatalf("GET: %v; want the head, sent before the cut", err)
			case err != nil:
				// No answer at all: the client cannot mistake it for a whole one.
			default:
				body, rerr := io.ReadAll(res.Body)
				res.Body.Close()
				if rerr == nil {
					t.Errorf("client read %d and %d bytes with no error; want a failed body", res.StatusCode, len(body))
				}
				if res.StatusCode != 200 || res.ContentLength != tt.wantLength || len(body) > tt.sent {
					t.Errorf("client got %d, Content-Length %d, %d bytes; want 200, %d, at most the %d sent",
						res.StatusCode, res.ContentLength, len(body), tt.wantLength, tt.sent)
				}
			}
			if got := waitOrTimeout(t, reasons, "the handler to end"); got != kindReset {
				t.Errorf("Timing.Reason() = %q, want %q", got, kindReset)
			}
			text := metricsText(set)
			for _, want := range []string{`bulwark_upstream_errors_total{kind="reset"} 1`, `bulwark_upstream_requests_total{code_class="2xx"} 1`} {
				if !strings.Contains(text, want) {
					t.Errorf("metrics lack %q", want)
				}
			}
		})
	}
}

// TestSwitchingProtocolsMismatch pins an app that answers 101 with an
// Upgrade other than the one the client asked for (or when it asked for
// none): the client gets Bulwark's 502 "other", the 101 is counted as a
// 1xx answer and the mismatch as an "other" error, and the switched
// connection is not reused for the next request. It fails if the 101 (or
// any protocol switch) reaches the client, the 502 or the counts change,
// or the next request is sent on the switched connection.
func TestSwitchingProtocolsMismatch(t *testing.T) {
	tests := []struct {
		name    string
		upgrade string // the client's request header lines
	}{
		{"websocket asked, foo answered", "Connection: Upgrade\r\nUpgrade: websocket\r\n"},
		{"no upgrade asked", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var conns atomic.Int32
			switchEnded := make(chan error, 1)
			addr := trackedApp(t, func(c net.Conn) {
				conns.Add(1)
				br := bufio.NewReader(c)
				for range 10 {
					req, ok := readRequestHead(br)
					if !ok {
						return
					}
					if req.URL.Path == "/switch" {
						io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n")
						_, err := io.Copy(io.Discard, br) // until the proxy closes it, or rawDeadline
						switchEnded <- err
						return
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			})
			p, set := newTestProxy(t, addr, nil)
			h, reasons := withTimingReason(p)
			c, br := dialFront(t, frontFor(t, h))
			res := rawRoundTrip(t, c, br, "GET", "GET /switch HTTP/1.1\r\nHost: site.example\r\nAccept: application/json\r\n"+tt.upgrade+"\r\n")
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusBadGateway || res.Header.Get("X-Bulwark-Error") != kindOther || !strings.Contains(string(body), `"by":"bulwark"`) {
				t.Errorf("answer = %d, X-Bulwark-Error %q, body %q; want Bulwark's 502 %q", res.StatusCode, res.Header.Get("X-Bulwark-Error"), body, kindOther)
			}
			if v, ok := res.Header["Upgrade"]; ok {
				t.Errorf("the client was offered Upgrade %q", v)
			}
			if got := waitOrTimeout(t, reasons, "the handler to end"); got != kindOther {
				t.Errorf("Timing.Reason() = %q, want %q", got, kindOther)
			}
			text := metricsText(set)
			for _, want := range []string{`bulwark_upstream_errors_total{kind="other"} 1`, `bulwark_upstream_requests_total{code_class="1xx"} 1`} {
				if !strings.Contains(text, want) {
					t.Errorf("metrics lack %q", want)
				}
			}
			next := rawRoundTrip(t, c, br, "GET", "GET /after HTTP/1.1\r\nHost: site.example\r\n\r\n")
			body, err := io.ReadAll(next.Body)
			if next.StatusCode != 200 || string(body) != "ok" || err != nil {
				t.Errorf("next answer = %d %q, %v; want 200 %q", next.StatusCode, body, err, "ok")
			}
			if got := conns.Load(); got != 2 {
				t.Errorf("the app saw %d connections, want 2: the switched one must not carry the next request", got)
			}
			// The switched connection is closed, not left to the app's own
			// timeout (httputil.ReverseProxy left it open).
			if err := waitOrTimeout(t, switchEnded, "the switched connection to end"); err != nil {
				t.Errorf("the app's switched connection ended with %v, want closed by the proxy", err)
			}
		})
	}
}

// TestZeroLengthBodyNotSent pins a request whose ContentLength is 0 but
// whose Body is not nil (and here even holds bytes): the app gets no body
// and no chunked framing; only a POST says "Content-Length: 0", as
// net/http would. The next request on the same pooled connection parses,
// which it would not if a body byte had been sent. It fails on a chunked
// or non-zero length, or any body byte on the wire.
func TestZeroLengthBodyNotSent(t *testing.T) {
	tests := []struct {
		method     string
		wantLength []string // the Content-Length lines the app gets
	}{
		{"POST", []string{"0"}},
		{"GET", nil},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			heads, addr := headRecordingApp(t)
			p, _ := newTestProxy(t, addr, nil)
			req := httptest.NewRequest(tt.method, "/empty", strings.NewReader("must not be sent"))
			req.ContentLength = 0
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, req)
			if rec.Code != 200 {
				t.Fatalf("status = %d, want 200", rec.Code)
			}
			got := waitOrTimeout(t, heads, "the app to read the request")
			if got == nil {
				t.Fatal("the app could not read the request")
			}
			if got.TransferEncoding != nil || !reflect.DeepEqual(got.Header["Content-Length"], tt.wantLength) {
				t.Errorf("the app got Transfer-Encoding %q, Content-Length %q; want none, %q", got.TransferEncoding, got.Header["Content-Length"], tt.wantLength)
			}
			rec = httptest.NewRecorder()
			p.ServeHTTP(rec, httptest.NewRequest("GET", "/next", nil))
			if got := waitOrTimeout(t, heads, "the app to read the next request"); got == nil || got.URL.Path != "/next" {
				t.Errorf("the next request on the connection did not parse as GET /next: a body byte was sent")
			}
		})
	}
}

// TestRequestTargetVerbatim pins that the app gets the client's request
// target byte for byte: an encoded slash in the path or query, ';', '+',
// an invalid escape, an empty query. (TestHeadersReachTheApp covers ';'
// and an escaped letter.) It fails on any re-encoding or dropped part.
func TestRequestTargetVerbatim(t *testing.T) {
	app := echoApp(t)
	p, _ := newTestProxy(t, hostOf(app), nil)
	for _, target := range []string{
		"/a%2Fb/c?d=%2F&e=f%2fg",
		"/p?a=1;b=2&c=x+y",
		"/p?a=%zz&b=%",
		"/p?",
		"/p%20q?x=%20",
	} {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
		if e := decodeEcho(t, rec); e.URI != target {
			t.Errorf("request target at the app = %q, want %q verbatim", e.URI, target)
		}
	}
}

// TestRepeatedRequestHeaders pins that a field the client sends on several
// lines reaches the app with every value, in order, not joined or
// deduplicated. It fails on a lost, merged or reordered value.
func TestRepeatedRequestHeaders(t *testing.T) {
	app := echoApp(t)
	p, _ := newTestProxy(t, hostOf(app), nil)
	want := http.Header{
		"Accept": {"text/html", "application/json;q=0.9"},
		"Cookie": {"a=1", "b=2; c=3"},
		"X-Tag":  {"z", "a", "z"},
	}
	req := httptest.NewRequest("GET", "/", nil)
	for k, vv := range want {
		for _, v := range vv {
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	e := decodeEcho(t, rec)
	for k, vv := range want {
		if got := e.Header[k]; !reflect.DeepEqual(got, vv) {
			t.Errorf("%s at the app = %q, want %q", k, got, vv)
		}
	}
}

// TestDateAndServerPassedThrough pins, at a real client, the app's Date
// and Server: passed as the app sent them, not rewritten; when the app
// sends none, the client-facing server adds its own Date and no Server.
// It fails if either is rewritten, a Server is made up, or the Date is
// missing.
func TestDateAndServerPassedThrough(t *testing.T) {
	const appDate = "Thu, 01 Jan 2026 00:00:00 GMT"
	tests := []struct {
		name       string
		fields     string
		wantDate   string // "" means a fresh, valid Date
		wantServer []string
	}{
		{"app sends both", "Date: " + appDate + "\r\nServer: uvicorn\r\n", appDate, []string{"uvicorn"}},
		{"app sends neither", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := cannedApp(t, func(*http.Request) (string, bool) {
				return "HTTP/1.1 200 OK\r\n" + tt.fields + "Content-Length: 2\r\n\r\nok", false
			})
			p, _ := newTestProxy(t, addr, nil)
			front := frontFor(t, p)
			res, err := front.Client().Get(front.URL)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			dates := res.Header["Date"]
			if len(dates) != 1 {
				t.Fatalf("Date at the client = %q, want exactly one", dates)
			}
			if tt.wantDate != "" && dates[0] != tt.wantDate {
				t.Errorf("Date at the client = %q, want the app's %q", dates[0], tt.wantDate)
			}
			if _, err := http.ParseTime(dates[0]); err != nil {
				t.Errorf("Date at the client = %q: %v", dates[0], err)
			}
			if got := res.Header["Server"]; !reflect.DeepEqual(got, tt.wantServer) {
				t.Errorf("Server at the client = %q, want %q", got, tt.wantServer)
			}
		})
	}
}
