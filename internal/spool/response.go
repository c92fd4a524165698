package spool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"bulwark/internal/httphdr"
)

// Responses returns a handler that, with BufferResponses, spools the answer
// of next: next's writes go into a Buffer and never wait for the client,
// while a copier goroutine feeds the client from the spool at the client's
// pace, flushing whenever it has caught up (so the first byte is not
// delayed). When next returns, Responses waits until the client has the
// whole answer or went away, then frees the spool; placed outside the
// concurrency limiter, the application's slot is free before a slow client
// is done.
//
// An answer passes through unbuffered (writes go to the client directly,
// Flush and Hijack work) when the request is an upgrade (WebSocket) or a
// HEAD, its path starts with one of StreamPaths, or at WriteHeader time the
// status is 101, 204 or 304, the Content-Type is text/event-stream, or the
// handler set "X-Accel-Buffering: no". X-Accel-Buffering is always removed
// before the client sees it. While buffering, next's Flush calls only wake
// the copier. Status and headers reach the client unchanged.
//
// Past the disk cap a response is not failed: next's writes block until the
// client has caught up, then the spool is emptied and reused, so the
// response continues in step with the client (the slot stays taken for that
// response, but no memory or disk grows). With the client gone, next's
// writes fail.
func (s *Spool) Responses(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isUpgrade(r) {
			next.ServeHTTP(w, r)
			return
		}
		ru := s.rules(r)
		rw := &respWriter{
			s:           s,
			w:           w,
			r:           r,
			buffer:      ru.BufferResponses && r.Method != http.MethodHead && !s.streamPath(r.URL.Path),
			share:       ru.MemoryPerBody,
			sendTimeout: ru.SendTimeout,
		}
		defer rw.finish()
		next.ServeHTTP(rw, r)
	})
}

// DirectMax is the largest answer, by its Content-Length, that is written
// straight to the client instead of spooled. The connection's socket buffer
// takes an answer this small at once, so the app's slot is not held by a
// slow client (nginx likewise writes small answers straight from its proxy
// buffers), and the spool's goroutine, buffer and second write are saved on
// the commonest answers.
const DirectMax = 16 << 10

// smallAnswer reports whether h declares a body of at most DirectMax bytes.
func smallAnswer(h http.Header) bool {
	cl := h.Get("Content-Length")
	if cl == "" {
		return false
	}
	n, err := strconv.ParseInt(cl, 10, 64)
	return err == nil && n >= 0 && n <= DirectMax
}

// isUpgrade reports whether r asks to switch protocols (WebSocket over
// HTTP/1.1, or an extended CONNECT over HTTP/2).
func isUpgrade(r *http.Request) bool {
	if r.Method == http.MethodConnect {
		return true
	}
	if r.Header.Get("Upgrade") == "" {
		return false
	}
	for _, v := range r.Header["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

func (s *Spool) streamPath(p string) bool {
	for _, prefix := range s.o().StreamPaths {
		if prefix != "" && strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// respWriter is the ResponseWriter next sees. Only next's goroutine calls
// its methods; the copier goroutine touches only w's Write and Flush, after
// WriteHeader, and the Buffer.
type respWriter struct {
	s      *Spool
	w      http.ResponseWriter
	r      *http.Request
	buffer bool // buffering is allowed for this request

	share       int64         // memory the spooled answer may hold
	sendTimeout time.Duration // bounds each write to the client

	wroteHeader bool
	buffered    bool // decided at WriteHeader: the body goes through b
	hijacked    bool

	// late holds headers the handler sets after a buffered WriteHeader
	// (trailers): the copier may be writing to w meanwhile, so they go to
	// w's header map only in finish, once the copier is done.
	late http.Header

	b       *Buffer       // created at the first buffered Write
	copied  chan struct{} // closed when the copier is done
	stopCtx func() bool   // stops the client-gone watch
}

var (
	_ http.ResponseWriter = (*respWriter)(nil)
	_ http.Flusher        = (*respWriter)(nil)
	_ http.Hijacker       = (*respWriter)(nil)
)

func (rw *respWriter) Header() http.Header {
	if rw.buffered {
		if rw.late == nil {
			rw.late = make(http.Header)
		}
		return rw.late
	}
	return rw.w.Header()
}

// Unwrap returns the client's ResponseWriter, for http.ResponseController.
func (rw *respWriter) Unwrap() http.ResponseWriter { return rw.w }

func (rw *respWriter) WriteHeader(code int) {
	if rw.wroteHeader {
		if !rw.buffered {
			rw.w.WriteHeader(code) // let net/http report the superfluous call
		}
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		rw.w.WriteHeader(code) // informational: sent at once, not final
		return
	}
	rw.wroteHeader = true
	h := rw.w.Header()
	noBuffering := false
	for _, v := range h.Values("X-Accel-Buffering") {
		if strings.EqualFold(strings.TrimSpace(v), "no") {
			noBuffering = true
		}
	}
	h.Del("X-Accel-Buffering")
	rw.buffered = rw.buffer && !noBuffering &&
		code != http.StatusSwitchingProtocols && code != http.StatusNoContent && code != http.StatusNotModified &&
		!httphdr.IsEventStream(h.Get("Content-Type")) && !smallAnswer(h)
	rw.w.WriteHeader(code)
}

func (rw *respWriter) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if !rw.buffered {
		return rw.w.Write(p)
	}
	if rw.b == nil {
		rw.start()
	}
	return rw.b.writeStream(p)
}

// Flush sends what was written to the client when passing through; while
// buffering it only wakes the copier, which flushes by itself whenever it
// has caught up.
func (rw *respWriter) Flush() { _ = rw.FlushError() }

// FlushError is Flush reporting the client's error, for
// http.ResponseController.
func (rw *respWriter) FlushError() error {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.buffered {
		if rw.b != nil {
			rw.b.wake()
		}
		return nil
	}
	return http.NewResponseController(rw.w).Flush()
}

// Hijack hands over the client connection, unless the answer is being
// buffered.
func (rw *respWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if rw.buffered {
		return nil, nil, errors.New("spool: cannot hijack a buffered response")
	}
	c, brw, err := http.NewResponseController(rw.w).Hijack()
	if err == nil {
		rw.hijacked = true
	}
	return c, brw, err
}

// start creates the spool and the copier; the copier ends when the client
// has everything written (after finish), or is gone.
func (rw *respWriter) start() {
	rw.b = rw.s.newBuffer(kindResponse, rw.share)
	rw.copied = make(chan struct{})
	b := rw.b
	ctx := rw.r.Context()
	rw.stopCtx = context.AfterFunc(ctx, func() {
		b.markGone(fmt.Errorf("client went away: %w", context.Cause(ctx)))
	})
	go rw.copyOut()
}

// finish runs when next returns (or panics): it lets the copier drain the
// spool to the client, waits for it, and frees the spool.
func (rw *respWriter) finish() {
	if rw.b == nil {
		return
	}
	rw.b.finish()
	<-rw.copied
	rw.stopCtx()
	rw.b.Close()
	if len(rw.late) > 0 {
		h := rw.w.Header()
		for k, v := range rw.late {
			h[k] = v
		}
	}
}

// copyOut feeds the client from the spool. It runs on its own goroutine
// and returns when every byte was written after the handler finished, or at
// the first client error (then the handler's writes fail).
func (rw *respWriter) copyOut() {
	defer close(rw.copied)
	b := rw.b
	bufp := rw.s.getChunk()
	defer rw.s.putChunk(bufp)
	rc := http.NewResponseController(rw.w)
	// net/http clears a connection's write deadline after each request, so
	// the deadlines set here do not outlive this answer.
	timeout := rw.sendTimeout
	deadline := false
	var off int64
	for {
		n, done, err := b.next(bufp[:], off)
		if err != nil {
			b.markGone(err)
			return
		}
		if n > 0 {
			if timeout > 0 {
				if rc.SetWriteDeadline(time.Now().Add(timeout)) == nil {
					deadline = true
				} else {
					timeout = 0 // not supported by this writer: stop trying
				}
			}
			if _, err := rw.w.Write(bufp[:n]); err != nil {
				b.markGone(fmt.Errorf("writing to client: %w", err))
				return
			}
			off += int64(n)
		}
		if done {
			if deadline {
				// Flush under the last deadline, before net/http clears it.
				_ = rc.Flush()
			}
			return
		}
		if n > 0 && b.caughtUp(off) {
			if err := rc.Flush(); err != nil {
				b.markGone(fmt.Errorf("flushing to client: %w", err))
				return
			}
		}
	}
}
