package front

import (
	"bufio"
	"errors"
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

var (
	_ http.ResponseWriter = (*response)(nil)
	_ http.Flusher        = (*response)(nil)
	_ http.Hijacker       = (*response)(nil)
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
	w.declared = declaredLength(w.header)
	w.noBody = noBody(w.req.Method, code)
}

// declaredLength returns the Content-Length a handler set, or -1; an
// invalid one is dropped from h.
func declaredLength(h http.Header) int64 {
	cl := h.Get("Content-Length")
	if cl == "" {
		return -1
	}
	if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
		return n
	}
	h.Del("Content-Length")
	return -1
}

// checkBodyWrite applies the rules every answer's Write shares to a write
// of n bytes: nothing to write, no body allowed (an answer to HEAD
// swallows it), or past the declared length. done reports that Write must
// return ret and err without writing.
func checkBodyWrite(method string, noBody bool, declared, written int64, n int) (ret int, done bool, err error) {
	switch {
	case n == 0:
		return 0, true, nil
	case noBody && method == http.MethodHead:
		return n, true, nil
	case noBody:
		return 0, true, http.ErrBodyNotAllowed
	case declared >= 0 && written+int64(n) > declared:
		return 0, true, http.ErrContentLength
	}
	return 0, false, nil
}

// noBody reports whether an answer to method with status code carries no
// body.
func noBody(method string, code int) bool {
	return method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
}

// writeInformational sends a 1xx answer (such as 103 Early Hints) at once.
func (w *response) writeInformational(code int) {
	bw := w.c.writer()
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(statusLine(code))
	bw.WriteString("\r\n")
	writeHeaderLines(bw, w.header)
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
	if n, done, err := checkBodyWrite(w.req.Method, w.noBody, w.declared, w.written, len(p)); done {
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
		w.commit(false)
	}
	w.written += int64(len(p))
	bw := w.c.bw
	if w.chunked {
		bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, err := bw.WriteString("\r\n")
		if err != nil {
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
	switch {
	case w.noBody && w.status != http.StatusOK && w.req.Method != http.MethodHead:
		h.Del("Content-Length") // 204/304 carry no framing
	case w.noBody, w.declared >= 0:
	case finishing:
		h.Set("Content-Length", strconv.FormatInt(w.written, 10))
		w.declared = w.written
	case w.req.ProtoMinor >= 1:
		w.chunked = true
	default:
		w.closeAfter = true // HTTP/1.0: the body ends when the connection does
	}
	if w.req.Close || w.c.srv.closing.Load() {
		w.closeAfter = true
	}
	if w.hsts != "" && h.Get("Strict-Transport-Security") == "" {
		h.Set("Strict-Transport-Security", w.hsts)
	}
	bw := w.c.writer()
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(statusLine(w.status))
	bw.WriteString("\r\n")
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate())
		bw.WriteString("\r\n")
	}
	writeHeaderLines(bw, h)
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
		if len(*w.pend) > 0 {
			if w.chunked {
				bw.WriteString(strconv.FormatInt(int64(len(*w.pend)), 16))
				bw.WriteString("\r\n")
				bw.Write(*w.pend)
				bw.WriteString("\r\n")
			} else {
				bw.Write(*w.pend)
			}
		}
		*w.pend = (*w.pend)[:0]
		pendPool.Put(w.pend)
		w.pend = nil
	}
}

// writeHeaderLines writes h, skipping values that would break the framing.
func writeHeaderLines(bw *bufio.Writer, h http.Header) {
	for k, vs := range h {
		if !h1.ValidFieldName(k) {
			continue
		}
		for _, v := range vs {
			if !h1.ValidFieldValue(v) {
				continue
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
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
		w.c.bw.WriteString("0\r\n\r\n")
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

// statusLine returns "200 OK" for 200.
func statusLine(code int) string {
	if code >= 0 && code < len(statusLines) && statusLines[code] != "" {
		return statusLines[code]
	}
	return formatStatusLine(code)
}

// statusLines holds statusLine for every code with a standard text, built
// once, so answering costs no allocation for it.
var statusLines = func() (t [600]string) {
	for code := range t {
		if http.StatusText(code) != "" {
			t[code] = formatStatusLine(code)
		}
	}
	return t
}()

func formatStatusLine(code int) string {
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	return strconv.Itoa(code) + " " + text
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
