package front

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"bulwark/internal/h1"

	"golang.org/x/net/http/httpguts"
)

// response is the http.ResponseWriter of an HTTP/1.1 request. The head is
// written on the first body write, Flush or finish; an answer without a
// Content-Length is sent chunked (or delimited by close for HTTP/1.0).
type response struct {
	c      *h1Conn
	req    *http.Request
	body   *requestBody
	header http.Header
	hsts   string

	wroteHeader bool // WriteHeader called with a final status
	committed   bool // head written to the connection buffer
	status      int
	declared    int64 // Content-Length the handler set; -1 when none
	written     int64
	chunked     bool
	noBody      bool // HEAD, 204, 304: body bytes are not sent
	closeAfter  bool
	// pend holds the first body bytes of an answer without Content-Length,
	// so that a small answer can still be sent with one.
	pend *[]byte
}

// pendMax is how much of an answer without Content-Length is held back to
// give it one; past it the answer is sent chunked.
const pendMax = 2048

var pendPool = sync.Pool{New: func() any { b := make([]byte, 0, pendMax); return &b }}

// The interfaces response implements. http.ResponseController finds
// FlushError, the deadlines and EnableFullDuplex by asserting anonymous
// interfaces (net/http/responsecontroller.go), so a method whose signature
// drifted would silently read as "not supported"; each is pinned here.
var (
	_ http.ResponseWriter                            = (*response)(nil)
	_ http.Flusher                                   = (*response)(nil)
	_ http.Hijacker                                  = (*response)(nil)
	_ io.StringWriter                                = (*response)(nil)
	_ interface{ FlushError() error }                = (*response)(nil)
	_ interface{ SetReadDeadline(time.Time) error }  = (*response)(nil)
	_ interface{ SetWriteDeadline(time.Time) error } = (*response)(nil)
	_ interface{ EnableFullDuplex() error }          = (*response)(nil)
)

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.c.hijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.writeInformational(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	w.declared = h1.DeclaredLength(w.header)
	w.noBody = h1.NoBody(w.req.Method, code)
}

// writeInformational sends a 1xx answer (such as 103 Early Hints) at once.
func (w *response) writeInformational(code int) {
	bw := w.c.writer()
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(h1.StatusLine(code))
	bw.WriteString("\r\n")
	h1.WriteHeaderLines(bw, w.header)
	bw.WriteString("\r\n")
	bw.Flush()
}

func (w *response) Write(p []byte) (int, error) {
	if w.c.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if n, done, err := h1.CheckBodyWrite(w.req.Method, w.noBody, w.declared, w.written, len(p)); done {
		return n, err
	}
	if !w.committed {
		if w.declared < 0 {
			if w.pend == nil {
				w.pend = pendPool.Get().(*[]byte)
			}
			if len(*w.pend)+len(p) <= pendMax {
				*w.pend = append(*w.pend, p...)
				w.written += int64(len(p))
				return len(p), nil
			}
		}
		if w.written+int64(len(p)) == w.declared {
			w.c.writerFor(len(p)) // the whole body: one write with the head
		}
		w.commit(false)
	}
	w.written += int64(len(p))
	bw := w.c.bw
	if w.chunked {
		if err := h1.WriteChunk(bw, p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return bw.Write(p)
}

// WriteString lets io.WriteString avoid a copy.
func (w *response) WriteString(s string) (int, error) {
	return w.Write([]byte(s))
}

// commit writes the status line and headers to the connection buffer,
// choosing how the body is delimited.
func (w *response) commit(finishing bool) {
	w.committed = true
	h := w.header
	h.Del("Transfer-Encoding")
	if httpguts.HeaderValuesContainsToken(h["Connection"], "close") {
		w.closeAfter = true
	}
	h.Del("Connection")
	h.Del("Keep-Alive")
	switch h1.FrameAnswer(w.req.Method, w.status, w.noBody, w.declared, finishing, w.req.ProtoMinor) {
	case h1.AnswerNoLength:
		h.Del("Content-Length")
	case h1.AnswerLength:
		h.Set("Content-Length", strconv.FormatInt(w.written, 10))
		w.declared = w.written
	case h1.AnswerChunked:
		w.chunked = true
	case h1.AnswerToClose:
		w.closeAfter = true
	}
	if w.req.Close || w.c.srv.closing.Load() {
		w.closeAfter = true
	}
	if w.hsts != "" && h.Get("Strict-Transport-Security") == "" {
		h.Set("Strict-Transport-Security", w.hsts)
	}
	bw := w.c.writer()
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(h1.StatusLine(w.status))
	bw.WriteString("\r\n")
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate())
		bw.WriteString("\r\n")
	}
	h1.WriteHeaderLines(bw, h)
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.closeAfter {
		bw.WriteString("Connection: close\r\n")
	} else if w.req.ProtoMinor == 0 {
		bw.WriteString("Connection: keep-alive\r\n")
	}
	bw.WriteString("\r\n")
	if w.pend != nil {
		if w.chunked {
			h1.WriteChunk(bw, *w.pend)
		} else {
			bw.Write(*w.pend)
		}
		*w.pend = (*w.pend)[:0]
		pendPool.Put(w.pend)
		w.pend = nil
	}
}

// Flush sends the head and everything written so far to the client.
func (w *response) Flush() {
	_ = w.FlushError()
}

// FlushError is Flush that reports the write error (http.ResponseController
// uses it).
func (w *response) FlushError() error {
	if w.c.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(false)
	}
	return w.c.bw.Flush()
}

// finish completes the answer after the handler returned.
func (w *response) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(true)
	}
	if w.chunked {
		h1.WriteLastChunk(w.c.bw, nil)
	}
	if w.declared >= 0 && w.written < w.declared && !w.noBody {
		// The handler sent less than it promised: the client cannot tell
		// where this answer ends, so the connection must.
		w.closeAfter = true
	}
	if err := w.c.bw.Flush(); err != nil {
		w.closeAfter = true
	}
	if w.body.expectContinue && !w.body.sentContinue {
		w.closeAfter = true
	}
}

// flushQuiet pushes out what was written before an aborted handler so the
// client sees as much as was sent, then the connection closes.
func (w *response) flushQuiet() {
	if w.committed && w.c.bw != nil {
		w.c.bw.Flush()
	}
}

// Hijack hands the connection to the handler (WebSocket upgrades). The
// server keeps tracking it so that shutdown can close it at the deadline.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.c.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.committed {
		return nil, nil, errors.New("hijack after the answer started")
	}
	c := w.c
	// No client-gone watch may start from here on: it reads c.br, which
	// the handler now owns.
	w.body.handlerDone()
	c.cr.abortPendingRead()
	c.hijacked = true
	hc := &hijackedConn{Conn: c.rwc, srv: c.srv, br: c.br, cr: &c.cr}
	c.srv.trackHijacked(hc, true)
	c.br = nil // the handler owns it now
	br := bufio.NewReaderSize(hc, 512)
	bw := bufio.NewWriter(hc)
	c.releaseWriter()
	return hc, bufio.NewReadWriter(br, bw), nil
}

// SetReadDeadline, SetWriteDeadline and EnableFullDuplex serve
// http.ResponseController.
func (w *response) SetReadDeadline(t time.Time) error  { return w.c.rwc.SetReadDeadline(t) }
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.rwc.SetWriteDeadline(t) }

// EnableFullDuplex is a no-op: the body can always be read while answering.
func (w *response) EnableFullDuplex() error { return nil }

// hijackedConn is a connection given away by Hijack. Reads first return
// bytes already buffered; Close removes it from the server's tracking.
type hijackedConn struct {
	net.Conn
	br     *bufio.Reader // the connection's reader, until drained
	cr     *connReader
	srv    *Server
	closed atomic.Bool
}

func (h *hijackedConn) Read(p []byte) (int, error) {
	if h.br != nil {
		if h.br.Buffered() > 0 || h.cr.hasByte {
			return h.br.Read(p)
		}
		h.br = nil
	}
	return h.Conn.Read(p)
}

func (h *hijackedConn) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	h.srv.trackHijacked(h, false)
	return h.Conn.Close()
}

func itoa(n int) string { return strconv.Itoa(n) }

// dateCache holds the Date header value, renewed at most once a second.
var dateCache atomic.Pointer[cachedDate]

type cachedDate struct {
	sec int64
	s   string
}

func httpDate() string {
	now := time.Now()
	if d := dateCache.Load(); d != nil && d.sec == now.Unix() {
		return d.s
	}
	d := &cachedDate{sec: now.Unix(), s: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}
