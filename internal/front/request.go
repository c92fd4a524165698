package front

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"bulwark/internal/h1"
)

// headError is a request that cannot be served; the connection closes after
// the answer.
type headError struct {
	status int
	reason string // X-Bulwark-Error and metric label
	msg    string
}

func (e *headError) Error() string { return e.msg }

func badRequest(reason, msg string) *headError {
	return &headError{status: http.StatusBadRequest, reason: reason, msg: msg}
}

var headPool = sync.Pool{New: func() any { return &headBuf{b: make([]byte, 0, 1024), ends: make([]int, 0, 16)} }}

// headBuf is a pooled request head and the ends of its lines.
type headBuf struct {
	b    []byte
	ends []int
}

// fromH1 turns h1's refusal of a request into the server's; other errors
// (the client went away) pass through.
func fromH1(err error) error {
	var he *h1.HeadError
	if errors.As(err, &he) {
		return &headError{status: he.Status, reason: he.Reason, msg: he.Msg}
	}
	return err
}

// readRequest reads and checks one request head and returns the request
// with its body reader. Errors are *headError, or the read error when the
// client went away or timed out before a complete head.
func (c *h1Conn) readRequest(ctx context.Context) (*http.Request, error) {
	hb := headPool.Get().(*headBuf)
	defer func() {
		if cap(hb.b) <= 64<<10 && cap(hb.ends) <= 1024 {
			hb.b, hb.ends = hb.b[:0], hb.ends[:0]
			headPool.Put(hb)
		}
	}()
	head, lines, err := h1.ReadRequestHead(c.br, hb.b[:0], hb.ends[:0], c.srv.o().MaxHeaderBytes)
	hb.b, hb.ends = head, lines
	if err != nil {
		return nil, fromH1(err)
	}
	req := newRequest(ctx)
	if err := h1.ParseRequestHead(req, head, lines); err != nil {
		return nil, fromH1(err)
	}
	req.RemoteAddr = c.remote
	req.TLS = c.tlsState
	if err := c.frameBody(req); err != nil {
		return nil, err
	}
	return req, nil
}

// frameBody decides how the request body is delimited, refusing the framing
// that request smuggling relies on, and attaches the body reader.
func (c *h1Conn) frameBody(req *http.Request) error {
	chunked, n, err := h1.FrameRequest(req)
	if err != nil {
		return fromH1(err)
	}
	b := &requestBody{c: c, chunked: chunked}
	switch {
	case chunked:
		b.r = h1.NewChunkedReader(c.br)
	case n > 0:
		b.remaining = n
	default:
		b.eof = true
	}
	req.Body = b
	if ex := req.Header["Expect"]; len(ex) > 0 {
		if len(ex) != 1 || !strings.EqualFold(ex[0], "100-continue") {
			return &headError{status: http.StatusExpectationFailed, reason: "expect", msg: "unsupported Expect"}
		}
		b.expectContinue = !b.eof && req.ProtoMinor == 1
	}
	// Expect is hop-by-hop in effect: Bulwark answers it itself.
	delete(req.Header, "Expect")
	stripH2CUpgrade(req.Header)
	return nil
}

// stripH2CUpgrade removes an h2c upgrade: Bulwark never forwards one, and
// the app must not switch protocols under the proxy.
func stripH2CUpgrade(h http.Header) {
	for _, v := range h["Upgrade"] {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "h2c") {
				delete(h, "Upgrade")
				delete(h, "Http2-Settings")
				return
			}
		}
	}
	delete(h, "Http2-Settings")
}

// requestBody is the body of an HTTP/1.1 request. The proxy's transport may
// read or close it from another goroutine, even after the handler returned,
// so its state is guarded by mu.
type requestBody struct {
	c              *h1Conn
	mu             sync.Mutex
	r              io.Reader // chunked reader; nil for Content-Length bodies
	chunked        bool
	remaining      int64 // Content-Length bytes left
	eof            bool
	closed         bool // the handler is done; reads fail
	err            error
	expectContinue bool
	sentContinue   bool
	readAny        bool
	watch          bool // the request ran past clientGoneDelay: watch the client once the body is read
	returned       bool // the handler returned: no background read may start
}

// watchClient starts watching for the client going away, now if the body
// has been read, else once it has. It runs on a timer's goroutine.
func (b *requestBody) watchClient() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.returned {
		return
	}
	b.watch = true
	if b.eof {
		b.c.cr.startBackgroundRead()
	}
}

// handlerDone records that the handler returned, so that no background
// read starts after the connection loop aborted the last one.
func (b *requestBody) handlerDone() {
	b.mu.Lock()
	b.returned = true
	b.mu.Unlock()
}

// errBodyAfterHandler is returned to a reader of a body whose handler has
// already returned.
var errBodyAfterHandler = errors.New("http: invalid Read on closed Body")

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyAfterHandler
	}
	return b.readLocked(p)
}

func (b *requestBody) readLocked(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.eof {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.expectContinue && !b.sentContinue {
		b.sentContinue = true
		if err := b.c.send100Continue(); err != nil {
			b.err = err
			return 0, err
		}
	}
	b.readAny = true
	b.c.rwc.SetReadDeadline(time.Now().Add(b.c.srv.o().BodyReadTimeout))
	var n int
	var err error
	if b.chunked {
		n, err = b.r.Read(p)
		if err == io.EOF {
			err = h1.SkipTrailer(b.c.br, b.c.srv.o().MaxHeaderBytes)
			if err == nil {
				err = io.EOF
			}
		}
	} else {
		if int64(len(p)) > b.remaining {
			p = p[:b.remaining]
		}
		n, err = b.c.br.Read(p)
		b.remaining -= int64(n)
		if b.remaining == 0 {
			err = io.EOF
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}
	switch {
	case err == io.EOF:
		b.eof = true
		b.c.rwc.SetReadDeadline(time.Time{})
		if b.watch && !b.returned {
			b.c.cr.startBackgroundRead()
		}
	case err != nil:
		b.err = fmt.Errorf("read request body: %w", err)
		err = b.err
	}
	return n, err
}

// Close marks the body as finished from the handler's side; what is left is
// drained or the connection closed by the connection loop.
func (b *requestBody) Close() error { return nil }

// close ends the body for every reader.
func (b *requestBody) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}

// unfinished reports whether the client may still be sending the body: it
// was not read to its end, and reading it did not fail.
func (b *requestBody) unfinished() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.eof && b.err == nil
}

// drain reads and discards what is left of the body so the connection can
// carry the next request, and reports whether that worked. A client that
// was told to wait for 100 Continue and never got it cannot be drained.
func (b *requestBody) drain() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.eof {
		return true
	}
	if b.err != nil || b.expectContinue && !b.sentContinue {
		return false
	}
	if !b.chunked && b.remaining > maxDrainBytes {
		return false
	}
	var buf [4096]byte
	total := 0
	for total <= maxDrainBytes {
		n, err := b.readLocked(buf[:])
		total += n
		if err == io.EOF {
			b.c.cr.abortPendingRead()
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

// send100Continue tells a client waiting on Expect: 100-continue to send
// its body. Nothing else has been written for this request yet.
func (c *h1Conn) send100Continue() error {
	c.rwc.SetWriteDeadline(time.Now().Add(c.srv.o().WriteTimeout))
	_, err := io.WriteString(c.rwc, "HTTP/1.1 100 Continue\r\n\r\n")
	return err
}
