package h2

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2/hpack"
)

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
func (c *h2Conn) startStream(req *http.Request, cancel context.CancelFunc, b *headerBlock, refuse *refusal) {
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
			c.srv.m.ConnState(-1, 1)
		}
	}
	c.mu.Unlock()
	c.srv.m.Streams(1)
	c.srv.runStream(streamTask{c, st, req, refuse})
}

// streamTask is a stream whose handler is to run.
type streamTask struct {
	c      *h2Conn
	st     *h2Stream
	req    *http.Request
	refuse *refusal
}

// runStream hands t to an idle stream worker, or starts one.
func (s *Server) runStream(t streamTask) {
	select {
	case s.work <- t:
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
		case t = <-s.work:
		case <-timer.C:
			return
		}
	}
}

// runStream runs the handler for one stream and completes its answer.
func (c *h2Conn) runStream(st *h2Stream, req *http.Request, refuse *refusal) {
	if st.over.Load() {
		// Reset before its handler started (a rapid reset): the app is
		// not asked for an answer no one will read.
		c.streamDone(st)
		return
	}
	w := &h2Response{st: st, req: req, header: make(http.Header, 8), hsts: c.srv.hsts()}
	if refuse != nil {
		c.srv.m.Refused(refuse.status, refuse.reason)
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
			c.srv.m.ConnState(1, -1)
		}
		if c.draining {
			c.rwc.SetReadDeadline(aLongTimeAgo) // the reader closes the connection
		} else {
			c.rwc.SetReadDeadline(time.Now().Add(min(idleHandoff, c.srv.o().IdleTimeout)))
		}
	}
	c.mu.Unlock()
	c.srv.m.Streams(-1)
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
