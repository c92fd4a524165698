package front

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

// headerBlock is the header block being decoded on a connection, with the
// request fields it carries. Owned by the reader goroutine.
type headerBlock struct {
	c         *h2Conn
	id        uint32
	endStream bool
	selfDep   bool
	trailers  bool // the block ends an open stream's body
	closed    bool // the block is on a stream that can take no headers
	ignore    bool // ... one this side reset lately: drop the block
	malformed string
	sawPseudo bool
	sawReg    bool
	tooLarge  bool
	size      int // decoded, as RFC 9113 counts it
	raw       int // encoded bytes received
	limit     int

	method, scheme, path, authority string
	header                          http.Header
}

func (b *headerBlock) begin(c *h2Conn, id uint32, endStream bool) {
	limit := c.srv.o().MaxHeaderBytes
	if c.dec == nil {
		b.c = c
		c.dec = hpack.NewDecoder(h2TableSize, b.emit)
	}
	// Past the limit a block is still decoded, to keep the HPACK state,
	// and answered 431; a single field far past it ends the connection.
	c.dec.SetMaxStringLength(4 * limit)
	b.id, b.endStream, b.limit = id, endStream, limit
}

func (b *headerBlock) clear() {
	*b = headerBlock{c: b.c}
}

// emit receives each decoded field and checks it (RFC 9113 8.2, 8.3).
func (b *headerBlock) emit(f hpack.HeaderField) {
	b.size += len(f.Name) + len(f.Value) + 32
	if b.size > b.limit {
		b.tooLarge = true
	}
	if b.tooLarge || b.malformed != "" {
		return
	}
	if f.IsPseudo() {
		if b.sawReg {
			b.malformed = "pseudo-header field after a regular one"
			return
		}
		b.sawPseudo = true
		var dst *string
		switch f.Name {
		case ":method":
			dst = &b.method
		case ":scheme":
			dst = &b.scheme
		case ":path":
			dst = &b.path
		case ":authority":
			dst = &b.authority
		default:
			b.malformed = "unknown pseudo-header field " + f.Name
			return
		}
		if *dst != "" || f.Value == "" {
			b.malformed = "repeated or empty " + f.Name
			return
		}
		*dst = f.Value
		return
	}
	b.sawReg = true
	if !validH2FieldName(f.Name) || !httpguts.ValidHeaderFieldValue(f.Value) {
		b.malformed = "invalid header field"
		return
	}
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		b.malformed = "connection-specific header field " + f.Name
		return
	case "te":
		if f.Value != "trailers" {
			b.malformed = "te other than trailers"
			return
		}
	}
	if b.header == nil {
		b.header = make(http.Header, 8)
	}
	k := canonicalH2Key(f.Name)
	b.header[k] = append(b.header[k], f.Value)
}

// validH2FieldName reports whether name is a lowercase token.
func validH2FieldName(name string) bool {
	if !httpguts.ValidHeaderFieldName(name) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// newRequest builds the request a header block opens. A request Bulwark
// answers itself (header too large, CONNECT) comes with its headError; a
// malformed one is an error, which resets the stream.
func (c *h2Conn) newRequest(ctx context.Context, b *headerBlock) (*http.Request, *headError, error) {
	h := b.header
	if h == nil {
		h = make(http.Header)
	}
	req := newRequest(ctx)
	req.Method, req.Header, req.Body = b.method, h, http.NoBody
	req.Proto, req.ProtoMajor = "HTTP/2.0", 2
	req.Host, req.RemoteAddr, req.RequestURI, req.TLS = b.authority, c.remote, b.path, c.tlsState
	if b.tooLarge || b.method == http.MethodConnect {
		if req.Method == "" {
			req.Method = http.MethodGet
		}
		req.URL = &url.URL{Path: "/"}
		if b.tooLarge {
			return req, &headError{status: http.StatusRequestHeaderFieldsTooLarge, reason: "header_too_large", msg: "request header fields too large"}, nil
		}
		return req, &headError{status: http.StatusMethodNotAllowed, reason: "connect", msg: "CONNECT is not supported"}, nil
	}
	if b.method == "" || b.scheme == "" || b.path == "" {
		return nil, nil, errors.New("missing :method, :scheme or :path")
	}
	if strings.IndexFunc(b.method, func(r rune) bool { return !httpguts.IsTokenRune(r) }) >= 0 {
		return nil, nil, errors.New("invalid :method")
	}
	if b.path[0] != '/' && (b.path != "*" || b.method != http.MethodOptions) {
		return nil, nil, errors.New("invalid :path")
	}
	if !validH2Path(b.path) {
		return nil, nil, errors.New("invalid :path: a byte outside VCHAR")
	}
	u, err := url.ParseRequestURI(b.path)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid :path: %w", err)
	}
	req.URL = u
	// As HTTP/1.1's Host: the app sees the authority in X-Forwarded-Host
	// and in the request line Bulwark sends it.
	if !httpguts.ValidHostHeader(b.authority) {
		return nil, nil, errors.New("invalid :authority")
	}
	if hosts, ok := h["Host"]; ok {
		if len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]) {
			return nil, nil, errors.New("invalid host")
		}
		if req.Host == "" && len(hosts) == 1 {
			req.Host = hosts[0]
		} else if len(hosts) != 1 || hosts[0] != req.Host {
			return nil, nil, errors.New("host differs from :authority")
		}
		delete(h, "Host")
	}
	if cookies := h["Cookie"]; len(cookies) > 1 {
		h["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	cl := int64(-1)
	if vs, ok := h["Content-Length"]; ok {
		for _, v := range vs {
			n, err := strconv.ParseUint(v, 10, 63)
			if err != nil || cl >= 0 && int64(n) != cl {
				return nil, nil, errors.New("invalid content-length")
			}
			cl = int64(n)
		}
	}
	if b.endStream {
		if cl > 0 {
			return nil, nil, errors.New("content-length without a body")
		}
		req.ContentLength = 0
	} else {
		req.ContentLength = cl
	}
	if vs := h["Trailer"]; len(vs) > 0 && !b.endStream {
		req.Trailer = declaredTrailer(vs)
	}
	return req, nil, nil
}

// validH2Path reports whether p has only visible ASCII (VCHAR): what an
// HTTP/1.1 request target may hold. A space would let the path forge the
// rest of the request line Bulwark sends the app.
func validH2Path(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] >= 0x7f {
			return false
		}
	}
	return true
}

// h2Stream is one request/response exchange on a connection. Fields after
// mu-guarded are protected by c.mu.
type h2Stream struct {
	c      *h2Conn
	id     uint32
	cancel context.CancelFunc
	over   atomic.Bool // done, for the handler's writes

	// Guarded by c.mu.
	done         bool // reset by either side or finished: frames are refused
	remoteClosed bool // the client sent END_STREAM
	bodyClosed   bool // the handler closed the body: data is discarded
	body         []byte
	bodyOff      int
	bodyErr      error // what Read returns once body is drained
	declared     int64 // request content-length; -1 unknown
	received     int64
	recvWindow   int64
	recvUnacked  int64
	sendWindow   int64
	trailer      http.Header // req.Trailer: written only by the body's reader
	trailerNames http.Header // a copy of its names, for the reader goroutine
	gotTrailer   http.Header // the declared trailer fields received
}

// endLocked ends the stream: its reads and writes fail from now on.
func (st *h2Stream) endLocked(err error) {
	if st.done {
		return
	}
	st.done = true
	st.over.Store(true)
	if st.bodyErr == nil || !st.remoteClosed || st.bodyOff < len(st.body) {
		st.bodyErr = err
	}
	st.body, st.bodyOff = nil, 0
	st.cancel()
	st.c.cond.Broadcast()
}

// startStream registers a stream for req, whose context cancel ends, and
// runs its handler.
func (c *h2Conn) startStream(req *http.Request, cancel context.CancelFunc, b *headerBlock, refuse *headError) {
	st := &h2Stream{c: c, id: b.id, cancel: cancel, declared: -1, recvWindow: h2StreamWindow}
	if b.endStream {
		st.remoteClosed = true
		st.bodyErr = io.EOF
	} else {
		st.declared = req.ContentLength
		if req.Trailer != nil {
			st.trailer, st.trailerNames = req.Trailer, req.Trailer.Clone()
		}
		req.Body = &h2Body{st: st, expectContinue: strings.EqualFold(req.Header.Get("Expect"), "100-continue")}
	}
	c.mu.Lock()
	st.sendWindow = c.peerWindow
	c.streams = append(c.streams, st)
	c.running++
	if c.running == 1 {
		c.rwc.SetReadDeadline(time.Time{})
		if !c.closed {
			c.srv.m.h2Idle.Dec()
			c.srv.m.h2Active.Inc()
		}
	}
	c.mu.Unlock()
	c.srv.m.h2Streams.Inc()
	c.srv.runStream(streamTask{c, st, req, refuse})
}

// streamTask is a stream whose handler is to run.
type streamTask struct {
	c      *h2Conn
	st     *h2Stream
	req    *http.Request
	refuse *headError
}

// runStream hands t to an idle stream worker, or starts one.
func (s *Server) runStream(t streamTask) {
	select {
	case s.h2work <- t:
	default:
		go s.streamWorker(t)
	}
}

// streamWorker runs stream handlers: the one it was started for, then those
// handed to it while it waits, up to idleHandoff. A fresh goroutine per
// stream would grow its stack through the whole handler chain every time:
// 6 % of CPU under an h2 load, in copystack.
func (s *Server) streamWorker(t streamTask) {
	timer := time.NewTimer(idleHandoff)
	defer timer.Stop()
	for {
		t.c.runStream(t.st, t.req, t.refuse)
		t = streamTask{} // hold no stream while waiting
		timer.Reset(idleHandoff)
		select {
		case t = <-s.h2work:
		case <-timer.C:
			return
		}
	}
}

// runStream runs the handler for one stream and completes its answer.
func (c *h2Conn) runStream(st *h2Stream, req *http.Request, refuse *headError) {
	if st.over.Load() {
		// Reset before its handler started (a rapid reset): the app is
		// not asked for an answer no one will read.
		c.streamDone(st)
		return
	}
	w := &h2Response{st: st, req: req, header: make(http.Header, 8), hsts: c.srv.hsts()}
	if refuse != nil {
		c.srv.m.refused(refuse.status, refuse.reason).Inc()
		w.header.Set("Content-Type", "text/plain; charset=utf-8")
		w.header.Set("X-Bulwark-Error", refuse.reason)
		w.WriteHeader(refuse.status)
		io.WriteString(w, refuse.msg+" (bulwark)\n")
		w.finish()
	} else if c.runHandler(w, req) {
		w.finish()
	}
	w.release()
	c.streamDone(st)
}

// runHandler calls the handler, turning a panic into a reset stream (and a
// 500 when nothing was sent yet). It reports false when the answer must not
// be finished.
func (c *h2Conn) runHandler(w *h2Response, req *http.Request) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			ok = false
			if p != http.ErrAbortHandler {
				c.srv.o().Logger.Error("panic serving request", "client", c.remote,
					"method", req.Method, "path", req.URL.Path, "panic", p, "stack", string(debug.Stack()))
				if !w.sentHeader {
					w.header = http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
					w.wroteHeader, w.status, w.written = false, 0, 0
					if w.bufp != nil {
						*w.bufp = (*w.bufp)[:0]
					}
					w.WriteHeader(http.StatusInternalServerError)
					io.WriteString(w, "500 Internal Server Error (bulwark)\n")
					w.finish()
					return
				}
			}
			c.resetStream(w.st.id, errInternal)
		}
	}()
	c.srv.o().Handler.ServeHTTP(w, req)
	return true
}

// streamDone retires a stream whose handler returned. A client still
// sending its body is asked to stop (RST_STREAM NO_ERROR, RFC 9113 8.1).
func (c *h2Conn) streamDone(st *h2Stream) {
	c.mu.Lock()
	stop := !st.done && !st.remoteClosed
	st.endLocked(errStreamReset)
	for i, s := range c.streams {
		if s == st {
			last := len(c.streams) - 1
			c.streams[i], c.streams[last] = c.streams[last], nil
			c.streams = c.streams[:last]
			break
		}
	}
	if len(c.streams) == 0 && cap(c.streams) > 16 {
		c.streams = nil
	}
	c.running--
	if stop {
		c.noteResetLocked(st.id)
	}
	if c.running == 0 {
		c.idleSince = time.Now()
		if !c.closed {
			c.srv.m.h2Active.Dec()
			c.srv.m.h2Idle.Inc()
		}
		if c.draining {
			c.rwc.SetReadDeadline(aLongTimeAgo) // the reader closes the connection
		} else {
			c.rwc.SetReadDeadline(time.Now().Add(min(idleHandoff, c.srv.o().IdleTimeout)))
		}
	}
	c.mu.Unlock()
	c.srv.m.h2Streams.Dec()
	if stop {
		_ = c.write(time.Time{}, func(b []byte) []byte { return appendRSTStream(b, st.id, errNo) })
	}
}

// h2Body is a request body: the DATA the reader goroutine received.
type h2Body struct {
	st             *h2Stream
	expectContinue bool
	sentContinue   bool
}

func (b *h2Body) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	st := b.st
	c := st.c
	c.mu.Lock()
	if b.expectContinue && !b.sentContinue && len(st.body) == 0 && st.bodyErr == nil {
		b.sentContinue = true
		c.mu.Unlock()
		err := c.writeStream(st, time.Time{}, func(buf []byte) []byte {
			return c.appendHeaders(buf, st.id, false, func(enc *hpack.Encoder) {
				enc.WriteField(hpack.HeaderField{Name: ":status", Value: "100"})
			})
		})
		if err != nil {
			return 0, err
		}
		c.mu.Lock()
	}
	var timer *time.Timer
	var deadline time.Time
	for st.bodyOff == len(st.body) && st.bodyErr == nil {
		if timer == nil {
			d := c.srv.o().BodyReadTimeout
			deadline = time.Now().Add(d)
			timer = time.AfterFunc(d, c.wake)
		} else if !time.Now().Before(deadline) {
			timer.Stop()
			c.mu.Unlock()
			return 0, fmt.Errorf("read request body: %w", os.ErrDeadlineExceeded)
		}
		c.cond.Wait()
	}
	if timer != nil {
		timer.Stop()
	}
	if st.bodyOff == len(st.body) {
		err := st.bodyErr
		if err == io.EOF && st.gotTrailer != nil {
			st.fillTrailerLocked()
		}
		c.mu.Unlock()
		return 0, err
	}
	n := copy(p, st.body[st.bodyOff:])
	st.bodyOff += n
	if st.bodyOff == len(st.body) {
		st.body, st.bodyOff = st.body[:0], 0
		if cap(st.body) > h2FrameSize {
			st.body = nil // a large upload's buffer is not kept between reads
		}
	}
	g := c.grantLocked(st, int64(n))
	c.mu.Unlock()
	c.sendWindowUpdates(st.id, g)
	return n, nil
}

// Close discards the rest of the body; what the client still sends is
// dropped and its window granted back.
func (b *h2Body) Close() error {
	st := b.st
	c := st.c
	c.mu.Lock()
	st.bodyClosed = true
	n := int64(len(st.body) - st.bodyOff)
	st.body, st.bodyOff = nil, 0
	var g windowGrant
	if n > 0 {
		g = c.grantLocked(st, n)
	}
	c.mu.Unlock()
	c.sendWindowUpdates(st.id, g)
	return nil
}

// wake wakes every waiter on c.cond, so that they check their deadlines.
func (c *h2Conn) wake() {
	c.mu.Lock()
	c.cond.Broadcast()
	c.mu.Unlock()
}

// h2BufPool holds answers' body buffers: one frame each.
var h2BufPool = sync.Pool{New: func() any { b := make([]byte, 0, h2FrameSize); return &b }}

// h2Response is the http.ResponseWriter of a stream. Its body is buffered
// up to one frame, so that a small answer goes out as HEADERS and DATA in
// one write, with a content-length.
type h2Response struct {
	st     *h2Stream
	req    *http.Request
	header http.Header
	hsts   string

	status      int
	wroteHeader bool // WriteHeader ran (or was implied)
	sentHeader  bool // the HEADERS frame is out
	noBody      bool
	declared    int64 // content-length set by the handler; -1 none
	written     int64
	bufp        *[]byte
	trailers    []string // names declared in Trailer before the head went out
	deadline    time.Time
}

var (
	_ http.ResponseWriter = (*h2Response)(nil)
	_ http.Flusher        = (*h2Response)(nil)
)

func (w *h2Response) Header() http.Header { return w.header }

func (w *h2Response) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code >= 100 && code < 200 {
		if code != http.StatusSwitchingProtocols {
			w.writeInformational(code)
		}
		return
	}
	w.wroteHeader = true
	w.status = code
	w.declared = declaredLength(w.header)
	w.noBody = noBody(w.req.Method, code)
	for _, v := range w.header["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
				w.trailers = append(w.trailers, k)
			}
		}
	}
}

// writeInformational sends a 1xx answer (such as 103 Early Hints) at once.
func (w *h2Response) writeInformational(code int) {
	c := w.st.c
	_ = c.writeStream(w.st, w.writeDeadline(), func(b []byte) []byte {
		return c.appendHeaders(b, w.st.id, false, func(enc *hpack.Encoder) {
			enc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(code)})
			encodeFields(enc, w.header)
		})
	})
}

func (w *h2Response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if n, done, err := checkBodyWrite(w.req.Method, w.noBody, w.declared, w.written, len(p)); done {
		return n, err
	}
	if w.st.over.Load() {
		return 0, errStreamReset
	}
	total := len(p)
	for len(p) > 0 {
		if w.bufp == nil && len(p) >= h2FrameSize {
			if err := w.send(p[:h2FrameSize], false); err != nil {
				return total - len(p), err
			}
			w.written += h2FrameSize
			p = p[h2FrameSize:]
			continue
		}
		if w.bufp == nil {
			w.bufp = h2BufPool.Get().(*[]byte)
		}
		buf := *w.bufp
		n := copy(buf[len(buf):cap(buf)], p)
		*w.bufp = buf[:len(buf)+n]
		w.written += int64(n)
		p = p[n:]
		if len(*w.bufp) == cap(*w.bufp) {
			err := w.send(*w.bufp, false)
			*w.bufp = (*w.bufp)[:0]
			if err != nil {
				return total - len(p) - n, err
			}
		}
	}
	return total, nil
}

// WriteString lets io.WriteString avoid a copy.
func (w *h2Response) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

// Flush sends the head and everything written so far.
func (w *h2Response) Flush() { _ = w.FlushError() }

// FlushError is Flush that reports the write error (http.ResponseController
// uses it).
func (w *h2Response) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.sentHeader && w.buffered() == 0 {
		return nil
	}
	err := w.send(w.pending(), false)
	if w.bufp != nil {
		*w.bufp = (*w.bufp)[:0]
	}
	return err
}

// SetWriteDeadline bounds the writes of this answer (http.ResponseController).
func (w *h2Response) SetWriteDeadline(t time.Time) error { w.deadline = t; return nil }

// SetReadDeadline is accepted and ignored: the body read has its own
// timeout (BodyReadTimeout).
func (w *h2Response) SetReadDeadline(time.Time) error { return nil }

// EnableFullDuplex is a no-op: the body can always be read while answering.
func (w *h2Response) EnableFullDuplex() error { return nil }

func (w *h2Response) buffered() int {
	if w.bufp == nil {
		return 0
	}
	return len(*w.bufp)
}

func (w *h2Response) pending() []byte {
	if w.bufp == nil {
		return nil
	}
	return *w.bufp
}

func (w *h2Response) writeDeadline() time.Time {
	d := time.Now().Add(w.st.c.srv.o().WriteTimeout)
	if !w.deadline.IsZero() && w.deadline.Before(d) {
		return w.deadline
	}
	return d
}

// finish completes the answer after the handler returned.
func (w *h2Response) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sentHeader {
		switch {
		case w.status == http.StatusNoContent || w.status == http.StatusNotModified:
			w.header.Del("Content-Length")
		case w.declared < 0 && (w.req.Method != http.MethodHead || w.written > 0):
			w.header.Set("Content-Length", strconv.FormatInt(w.written, 10))
		}
	}
	_ = w.send(w.pending(), true)
}

// release returns the body buffer.
func (w *h2Response) release() {
	if w.bufp != nil {
		*w.bufp = (*w.bufp)[:0]
		h2BufPool.Put(w.bufp)
		w.bufp = nil
	}
}

// trailerFields returns the trailers with values: those declared in
// Trailer and those set with http.TrailerPrefix.
func (w *h2Response) trailerFields() http.Header {
	var t http.Header
	add := func(k string, vs []string) {
		if len(vs) == 0 {
			return
		}
		if t == nil {
			t = make(http.Header)
		}
		t[k] = vs
	}
	for _, k := range w.trailers {
		add(k, w.header[k])
	}
	for k, vs := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			add(http.CanonicalHeaderKey(name), vs)
		}
	}
	return t
}

// send writes data as DATA frames, with the head first if it is not out
// yet; end ends the stream (with the trailers, if any). It waits for flow
// control window, up to the write deadline.
func (w *h2Response) send(data []byte, end bool) error {
	st, c := w.st, w.st.c
	var trailers http.Header
	if end {
		trailers = w.trailerFields()
	}
	deadline := w.writeDeadline()
	for first := true; first || len(data) > 0; first = false {
		n := 0
		if len(data) > 0 {
			var err error
			if n, err = st.reserve(len(data), deadline); err != nil {
				if !errors.Is(err, errStreamReset) {
					c.resetStream(st.id, errCancel)
				}
				return err
			}
		}
		chunk := data[:n]
		data = data[n:]
		last := end && len(data) == 0
		err := c.writeStream(st, deadline, func(b []byte) []byte {
			if last {
				// This write ends the stream: from now on the client's
				// frames on it meet a closed stream (RFC 9113 5.1).
				st.over.Store(true)
			}
			if !w.sentHeader {
				w.sentHeader = true
				headEnd := last && n == 0 && trailers == nil
				b = c.appendHeaders(b, st.id, headEnd, w.encodeHead)
				if headEnd {
					return b
				}
			}
			if n > 0 || last && trailers == nil {
				var flags byte
				if last && trailers == nil {
					flags = flagEndStream
				}
				b = appendFrameHeader(b, n, frameData, flags, st.id)
				b = append(b, chunk...)
			}
			if last && trailers != nil {
				b = c.appendHeaders(b, st.id, true, func(enc *hpack.Encoder) { encodeFields(enc, trailers) })
			}
			return b
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// reserve takes up to want bytes (at most a frame) of send window, waiting
// for the client to grant some until deadline.
func (st *h2Stream) reserve(want int, deadline time.Time) (int, error) {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if st.done || c.closed {
			return 0, errStreamReset
		}
		if avail := min(st.sendWindow, c.sendWindow); avail > 0 {
			n := int(min(int64(want), avail, h2FrameSize))
			st.sendWindow -= int64(n)
			c.sendWindow -= int64(n)
			return n, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return 0, fmt.Errorf("waiting for http2 flow control window: %w", os.ErrDeadlineExceeded)
		}
		if timer == nil {
			timer = time.AfterFunc(left, c.wake)
		}
		c.cond.Wait()
	}
}

// encodeHead encodes the final response head.
func (w *h2Response) encodeHead(enc *hpack.Encoder) {
	if w.hsts != "" && w.header.Get("Strict-Transport-Security") == "" {
		w.header.Set("Strict-Transport-Security", w.hsts)
	}
	enc.WriteField(hpack.HeaderField{Name: ":status", Value: statusString(w.status)})
	if _, ok := w.header["Date"]; !ok {
		enc.WriteField(hpack.HeaderField{Name: "date", Value: httpDate()})
	}
	encodeFields(enc, w.header)
}

// encodeFields encodes h, leaving out the HTTP/1.1 connection fields, which
// HTTP/2 forbids, trailers set with http.TrailerPrefix, and values that
// are not valid.
func encodeFields(enc *hpack.Encoder, h http.Header) {
	for k, vs := range h {
		switch k {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade":
			continue
		}
		if strings.HasPrefix(k, http.TrailerPrefix) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		name := lowerH2Key(k)
		for _, v := range vs {
			if httpguts.ValidHeaderFieldValue(v) {
				enc.WriteField(hpack.HeaderField{Name: name, Value: v})
			}
		}
	}
}

// appendHeaders appends a header block, encoded by fields, as HEADERS and
// CONTINUATION frames. c.wmu must be held: the encoder is the connection's.
func (c *h2Conn) appendHeaders(b []byte, id uint32, endStream bool, fields func(*hpack.Encoder)) []byte {
	if c.enc == nil {
		c.enc = hpack.NewEncoder(&c.encBuf)
		c.enc.SetMaxDynamicTableSizeLimit(0)
	}
	c.encBuf.b = c.encBuf.b[:0]
	fields(c.enc)
	block := c.encBuf.b
	typ := byte(frameHeaders)
	var flags byte
	if endStream {
		flags = flagEndStream
	}
	for {
		n := min(len(block), h2FrameSize)
		f := flags
		if n == len(block) {
			f |= flagEndHeaders
		}
		b = appendFrameHeader(b, n, typ, f, id)
		b = append(b, block[:n]...)
		block = block[n:]
		if len(block) == 0 {
			break
		}
		typ, flags = frameContinuation, 0
	}
	if cap(c.encBuf.b) > 4<<10 {
		c.encBuf.b = nil // a rare large head is not kept
	}
	return b
}

// canonicalH2Key maps a lowercase field name to its canonical form without
// allocating for the common ones.
func canonicalH2Key(name string) string {
	if k, ok := commonCanonical[name]; ok {
		return k
	}
	return http.CanonicalHeaderKey(name)
}

// lowerH2Key maps a canonical field name to lowercase without allocating
// for the common ones.
func lowerH2Key(k string) string {
	if l, ok := commonLower[k]; ok {
		return l
	}
	return strings.ToLower(k)
}

var commonCanonical, commonLower = func() (map[string]string, map[string]string) {
	names := []string{
		"accept", "accept-encoding", "accept-language", "accept-ranges", "age", "authorization",
		"cache-control", "content-disposition", "content-encoding", "content-language", "content-length",
		"content-location", "content-range", "content-type", "cookie", "date", "etag", "expect", "expires",
		"forwarded", "from", "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since",
		"last-modified", "link", "location", "origin", "priority", "range", "referer", "refresh", "retry-after",
		"sec-fetch-dest", "sec-fetch-mode", "sec-fetch-site", "sec-fetch-user", "server", "set-cookie",
		"strict-transport-security", "te", "trailer", "user-agent", "vary", "via", "www-authenticate",
		"x-content-type-options", "x-forwarded-for", "x-forwarded-proto", "x-frame-options", "x-real-ip",
		"x-request-id", "x-bulwark-error", "x-accel-buffering",
	}
	canon := make(map[string]string, len(names))
	lower := make(map[string]string, len(names))
	for _, n := range names {
		k := http.CanonicalHeaderKey(n)
		canon[n] = k
		lower[k] = n
	}
	return canon, lower
}()
