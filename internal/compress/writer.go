package compress

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"bulwark/internal/httphdr"
)

// state is where a writer is in deciding about its answer.
type state int

const (
	stateInit      state = iota // no header yet
	stateBuffering              // compressible, length unknown: holding up to minSize bytes
	stateCompress               // headers sent with Content-Encoding; bytes go through enc
	statePass                   // headers sent as they were; bytes go straight through
	stateHijacked
)

// writer is the ResponseWriter next writes to.
type writer struct {
	http.ResponseWriter
	c *Compressor
	p *compiled
	// coding is the client's choice (pickCoding) and gzipOK whether it
	// takes gzip at all: Accept-Encoding read once, in Middleware.
	coding string
	gzipOK bool

	st     state
	code   int
	buf    []byte // stateBuffering: at most p.minSize bytes
	enc    encoder
	pool   *sync.Pool // where enc goes back
	slot   bool       // enc is a full encoder holding a slot
	stream bool       // text/event-stream: stateless gzip only
}

var (
	_ http.Flusher  = (*writer)(nil)
	_ http.Hijacker = (*writer)(nil)
)

func (w *writer) WriteHeader(code int) {
	if w.st != stateInit {
		return // superfluous: the first one counts
	}
	if code < 200 {
		if code == http.StatusSwitchingProtocols {
			w.st = statePass
		}
		w.ResponseWriter.WriteHeader(code) // 103 Early Hints, 101
		return
	}
	w.code = code
	h := w.Header()
	if !w.eligible(code, h) {
		w.st = statePass
		w.ResponseWriter.WriteHeader(code)
		return
	}
	httphdr.AddVary(h, "Accept-Encoding")
	if w.coding == "" {
		w.st = statePass
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.stream = httphdr.IsEventStream(h.Get("Content-Type"))
	if cl := h.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < int64(w.p.minSize) || n == 0 {
			w.st = statePass
			w.ResponseWriter.WriteHeader(code)
			return
		}
		w.start()
		return
	}
	if w.p.minSize == 0 {
		w.start()
		return
	}
	w.st = stateBuffering
}

// eligible reports whether an answer with code and h may be compressed.
func (w *writer) eligible(code int, h http.Header) bool {
	switch code {
	case http.StatusNoContent, http.StatusNotModified, http.StatusPartialContent, http.StatusResetContent:
		return false
	}
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return false
	}
	if h.Get("Content-Range") != "" || hasToken(h.Values("Cache-Control"), "no-transform") {
		return false
	}
	return w.p.compressible(h.Get("Content-Type"))
}

// start sends the headers of a compressed answer and readies the encoder.
// Without a free slot, or for an event stream, that is a stateless gzip
// encoder when the client takes gzip; when it takes only zstd, the answer
// goes out as it is.
func (w *writer) start() {
	coding := w.coding
	switch {
	case coding == "zstd" && !w.stream && w.takeSlot():
		w.enc, w.pool, w.slot = w.c.zstdPool.Get().(encoder), &w.c.zstdPool, true
	case coding == "gzip" && !w.stream && w.takeSlot():
		w.enc, w.pool, w.slot = w.c.gzipPool.Get().(encoder), &w.c.gzipPool, true
	case w.gzipOK:
		coding = "gzip"
		w.enc, w.pool = w.c.statelessPool.Get().(encoder), &w.c.statelessPool
	default:
		w.st = statePass
		w.ResponseWriter.WriteHeader(w.code)
		w.flushBuf()
		return
	}
	h := w.Header()
	h.Del("Content-Length")
	h.Del("Accept-Ranges") // ranges of the compressed bytes are not offered
	h.Set("Content-Encoding", coding)
	if et := h.Get("ETag"); strings.HasPrefix(et, `"`) {
		h.Set("ETag", "W/"+et)
	}
	w.enc.Reset(w.ResponseWriter)
	w.st = stateCompress
	w.ResponseWriter.WriteHeader(w.code)
	if len(w.buf) > 0 {
		_, _ = w.enc.Write(w.buf)
		w.buf = nil
	}
}

func (w *writer) takeSlot() bool {
	select {
	case w.c.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// flushBuf writes out the bytes held while deciding.
func (w *writer) flushBuf() {
	if len(w.buf) > 0 {
		_, _ = w.ResponseWriter.Write(w.buf)
		w.buf = nil
	}
}

func (w *writer) Write(p []byte) (int, error) {
	if w.st == stateInit {
		w.WriteHeader(http.StatusOK)
	}
	switch w.st {
	case stateBuffering:
		if len(w.buf)+len(p) < w.p.minSize {
			w.buf = append(w.buf, p...)
			return len(p), nil
		}
		w.start()
		if w.st == stateCompress {
			return w.enc.Write(p)
		}
		return w.ResponseWriter.Write(p)
	case stateCompress:
		return w.enc.Write(p)
	}
	return w.ResponseWriter.Write(p)
}

// Flush sends what the app wrote so far: a stream is flushed as the app
// flushes, compressed or not.
func (w *writer) Flush() { _ = w.FlushError() }

// FlushError is Flush that reports the write error (http.ResponseController).
func (w *writer) FlushError() error {
	if w.st == stateInit {
		w.WriteHeader(http.StatusOK)
	}
	if w.st == stateBuffering {
		w.start() // a flush before min_size: a stream, compressed from here
	}
	if w.st == stateCompress {
		if err := w.enc.Flush(); err != nil {
			return err
		}
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack hands the connection over (WebSocket); nothing is compressed then.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.st = stateHijacked
	}
	return c, brw, err
}

// Unwrap serves http.ResponseController.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish ends the answer after next returned: a short answer held while
// deciding goes out as it is, with its length; a compressed one gets its
// encoder's trailer.
func (w *writer) finish() {
	switch w.st {
	case stateBuffering:
		w.st = statePass
		w.Header().Set("Content-Length", strconv.Itoa(len(w.buf)))
		w.ResponseWriter.WriteHeader(w.code)
		w.flushBuf()
	case stateCompress:
		_ = w.enc.Close()
	}
}

// release gives the encoder back, and its slot, however the answer ended.
func (w *writer) release() {
	if w.enc == nil {
		return
	}
	w.enc.Reset(nil)
	w.pool.Put(w.enc)
	w.enc = nil
	if w.slot {
		<-w.c.slots
		w.slot = false
	}
}
