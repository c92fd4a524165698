package h2

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"bulwark/internal/h1"

	"golang.org/x/net/http2/hpack"
)

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

// http.ResponseController finds its methods by their signatures: a wrong
// one would make it fall back to http.ErrNotSupported without a word, so
// each is checked here.
var (
	_ http.ResponseWriter                            = (*h2Response)(nil)
	_ http.Flusher                                   = (*h2Response)(nil)
	_ io.StringWriter                                = (*h2Response)(nil)
	_ interface{ FlushError() error }                = (*h2Response)(nil)
	_ interface{ SetReadDeadline(time.Time) error }  = (*h2Response)(nil)
	_ interface{ SetWriteDeadline(time.Time) error } = (*h2Response)(nil)
	_ interface{ EnableFullDuplex() error }          = (*h2Response)(nil)
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
	w.declared = h1.DeclaredLength(w.header)
	w.noBody = h1.NoBody(w.req.Method, code)
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
	if n, done, err := h1.CheckBodyWrite(w.req.Method, w.noBody, w.declared, w.written, len(p)); done {
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
		enc.WriteField(hpack.HeaderField{Name: "date", Value: w.st.c.srv.httpDate()})
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
		if strings.HasPrefix(k, http.TrailerPrefix) || !h1.ValidFieldName(k) {
			continue
		}
		name := lowerH2Key(k)
		for _, v := range vs {
			if h1.ValidFieldValue(v) {
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
