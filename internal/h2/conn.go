package h2

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"
)

// Bulwark serves HTTP/2 with its own connection code rather than net/http's
// for the same reasons as HTTP/1.1: memory and CPU. net/http keeps two
// goroutines, a write buffer and its scheduler per connection, and hands
// every frame between goroutines over channels. Here an idle connection is
// one goroutine blocked reading a frame header, holding no buffer; a stream
// runs its handler on its own goroutine, which writes its frames to the
// connection itself under a lock, so an answer costs no hand-off. Frames
// are parsed by hand; HPACK comes from golang.org/x/net/http2/hpack.

// HTTP/2 frame types, flags, settings and error codes (RFC 9113).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	settingHeaderTableSize      = 0x1
	settingEnablePush           = 0x2
	settingMaxConcurrentStreams = 0x3
	settingInitialWindowSize    = 0x4
	settingMaxFrameSize         = 0x5
	settingMaxHeaderListSize    = 0x6

	errNo              = 0x0
	errProtocol        = 0x1
	errInternal        = 0x2
	errFlowControl     = 0x3
	errStreamClosed    = 0x5
	errFrameSize       = 0x6
	errRefusedStream   = 0x7
	errCancel          = 0x8
	errCompression     = 0x9
	errEnhanceYourCalm = 0xb

	// h2Preface is what every client connection starts with.
	h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	// h2FrameSize is the largest frame read or written: HTTP/2's minimum
	// maximum. Larger frames only cost memory on a small server.
	h2FrameSize = 16 << 10
	// h2StreamWindow and h2ConnWindow bound the request body bytes a client
	// may send ahead of the handler reading them, per stream and in all.
	h2StreamWindow = 256 << 10
	h2ConnWindow   = 1 << 20
	// h2DefaultWindow is the window both sides start with (RFC 9113 6.9.2).
	h2DefaultWindow = 65535
	h2MaxWindow     = 1<<31 - 1
	// h2TableSize is the HPACK dynamic table the client may use for the
	// headers it sends (the protocol default). Answers are encoded without
	// a dynamic table, as nginx does: it would cost 4 KiB per connection.
	h2TableSize = 4096
	// h2RecentResets is how many streams this side reset are remembered, so
	// that frames the client sent before it saw the reset are ignored.
	h2RecentResets = 4
)

// h2ConnError ends the connection with a GOAWAY carrying code.
type h2ConnError struct {
	code   uint32
	reason string
}

func (e h2ConnError) Error() string {
	return fmt.Sprintf("http2 connection error %d: %s", e.code, e.reason)
}

// h2StreamError ends one stream with a RST_STREAM carrying code.
type h2StreamError struct {
	id     uint32
	code   uint32
	reason string
}

func (e h2StreamError) Error() string {
	return fmt.Sprintf("http2 stream %d error %d: %s", e.id, e.code, e.reason)
}

// errStreamReset is what a handler's reads and writes return once its
// stream is over: the client reset it or the connection closed.
var errStreamReset = errors.New("http2: stream closed")

var (
	h2PayloadPool = sync.Pool{New: func() any { b := make([]byte, h2FrameSize); return &b }}
	h2WritePool   = sync.Pool{New: func() any { b := make([]byte, 0, h2FrameSize+1024); return &b }}
)

// h2Conn is one HTTP/2 client connection. Its reader goroutine reads and
// applies frames; stream handlers write their own frames under wmu.
type h2Conn struct {
	srv      *Server
	rwc      net.Conn
	tlsState *tls.ConnectionState
	remote   string

	// Owned by the reader goroutine.
	hdr       [9]byte
	hdrN      int // bytes of hdr read so far
	dec       *hpack.Decoder
	blk       headerBlock
	contID    uint32    // stream whose header block awaits CONTINUATION; 0 for none
	maxID     uint32    // highest stream ID the client opened
	settled   bool      // the client's first SETTINGS arrived
	handedOff bool      // this idle period already moved to a fresh goroutine
	resets    int       // charges for reset or refused streams (chargeReset)
	resetsAt  time.Time // when resets was last refilled

	mu          sync.Mutex
	cond        sync.Cond // on mu: send window, body data, stream end
	streams     []*h2Stream
	running     int // streams whose handler has not returned
	idleSince   time.Time
	sendWindow  int64     // connection send window
	peerWindow  int64     // the client's SETTINGS_INITIAL_WINDOW_SIZE
	recvWindow  int64     // connection bytes the client may still send
	recvUnacked int64     // connection bytes read but not yet granted again
	draining    bool      // GOAWAY sent: no new streams
	drainBy     time.Time // an idle draining connection is read until then
	lastID      uint32
	closed      bool
	reset       [h2RecentResets]uint32 // streams this side reset lately
	resetN      int

	wmu    sync.Mutex
	enc    *hpack.Encoder
	encBuf encodeBuffer
	werr   error // first write error; the connection is dead after it
}

// encodeBuffer collects the HPACK encoder's output.
type encodeBuffer struct{ b []byte }

func (e *encodeBuffer) Write(p []byte) (int, error) { e.b = append(e.b, p...); return len(p), nil }

// serveH2 serves HTTP/2 on a connection that negotiated h2.
func (s *Server) serveH2(rwc net.Conn, st *tls.ConnectionState) {
	c := &h2Conn{
		srv:        s,
		rwc:        rwc,
		tlsState:   st,
		remote:     rwc.RemoteAddr().String(),
		sendWindow: h2DefaultWindow,
		peerWindow: h2DefaultWindow,
		recvWindow: h2ConnWindow,
		idleSince:  time.Now(),
	}
	c.cond.L = &c.mu
	if !s.track(c, true) {
		rwc.Close()
		return
	}
	s.m.ConnState(1, 0)
	if err := c.start(); err != nil {
		c.close()
		return
	}
	c.serve()
}

// start sends the server's SETTINGS and reads the client preface.
func (c *h2Conn) start() error {
	o := c.srv.o()
	err := c.write(time.Time{}, func(b []byte) []byte {
		b = appendFrameHeader(b, 6*4, frameSettings, 0, 0)
		b = appendSetting(b, settingMaxConcurrentStreams, uint32(o.MaxConcurrentStreams))
		b = appendSetting(b, settingInitialWindowSize, h2StreamWindow)
		b = appendSetting(b, settingMaxFrameSize, h2FrameSize)
		b = appendSetting(b, settingMaxHeaderListSize, uint32(o.MaxHeaderBytes))
		return appendWindowUpdate(b, 0, h2ConnWindow-h2DefaultWindow)
	})
	if err != nil {
		return err
	}
	c.rwc.SetReadDeadline(time.Now().Add(o.ReadHeaderTimeout))
	var preface [len(h2Preface)]byte
	if _, err := io.ReadFull(c.rwc, preface[:]); err != nil {
		return fmt.Errorf("read http2 preface: %w", err)
	}
	if string(preface[:]) != h2Preface {
		c.goAway(errProtocol, "bad preface")
		return errors.New("bad http2 preface")
	}
	return nil
}

// serve reads frames until the connection ends. Like the HTTP/1.1 loop, a
// connection quiet for idleHandoff moves to a fresh goroutine, so that the
// stack grown by decoding headers is not kept while it idles.
func (c *h2Conn) serve() {
	for {
		typ, flags, id, bp, err := c.readFrame()
		if err != nil {
			if errors.Is(err, errIdleHandoff) {
				go c.serve()
				return
			}
			c.end(err)
			return
		}
		var payload []byte
		if bp != nil {
			payload = *bp
		}
		err = c.processFrame(typ, flags, id, payload)
		if bp != nil {
			h2PayloadPool.Put(bp)
		}
		if err != nil {
			var se h2StreamError
			if errors.As(err, &se) {
				if se.id > c.maxID && se.id%2 == 1 {
					// An idle stream reset (a PRIORITY that depends on
					// itself) is closed from now on: HEADERS the client
					// sends on it later are ignored, not served on a
					// stream this side has reset (RFC 9113 5.1, 5.4.2).
					c.mu.Lock()
					c.maxID = se.id
					c.mu.Unlock()
				}
				// A reset this side sends on a stream still open is
				// charged like one the client sends: a client could
				// otherwise provoke resets (a zero WINDOW_UPDATE, too
				// much DATA) to start handlers without limit
				// ("MadeYouReset", CVE-2025-8671). A refused stream has
				// no stream here, and was charged when refused.
				c.mu.Lock()
				st := c.stream(se.id)
				charge := st != nil && !st.over.Load()
				c.mu.Unlock()
				c.resetStream(se.id, se.code)
				if charge {
					if err := c.chargeReset(time.Now()); err != nil {
						c.end(err)
						return
					}
				}
				continue
			}
			c.end(err)
			return
		}
	}
}

// end closes the connection after err, with a GOAWAY when err is a
// connection error the client should hear of.
func (c *h2Conn) end(err error) {
	var ce h2ConnError
	if errors.As(err, &ce) {
		c.goAway(ce.code, ce.reason)
		if ce.code != errNo {
			c.lingerAfterGoAway()
		}
	}
	c.close()
}

// h2ErrorLinger and h2ErrorLingerBytes bound what is read and dropped
// after a GOAWAY with an error: x/net's server too keeps reading for a
// second (goAwayTimeout).
const (
	h2ErrorLinger      = time.Second
	h2ErrorLingerBytes = 1 << 20
)

// lingerAfterGoAway reads and drops what the client still sends, for a
// bounded time and amount, before the connection closes. Closing a socket
// with unread bytes in it makes the kernel send a TCP reset, and a client
// that receives the reset discards what it had not read yet: the GOAWAY,
// and with it the reason, would be lost to a client still writing (a
// flood ended with ENHANCE_YOUR_CALM). The streams end first, so no
// handler waits on the linger.
func (c *h2Conn) lingerAfterGoAway() {
	c.mu.Lock()
	for _, st := range c.streams {
		st.endLocked(errStreamReset)
	}
	c.cond.Broadcast()
	dead := c.closed
	c.mu.Unlock()
	c.wmu.Lock()
	dead = dead || c.werr != nil
	c.wmu.Unlock()
	if dead {
		return
	}
	c.rwc.SetReadDeadline(time.Now().Add(h2ErrorLinger))
	bp := h2PayloadPool.Get().(*[]byte)
	defer h2PayloadPool.Put(bp)
	buf := (*bp)[:cap(*bp)]
	for n := 0; n < h2ErrorLingerBytes; {
		m, err := c.rwc.Read(buf)
		n += m
		if err != nil {
			return
		}
	}
}

// errIdleHandoff asks serve to continue on a fresh goroutine.
var errIdleHandoff = errors.New("idle handoff")

// readFrame reads the next frame; its payload, if any, is in a buffer from
// h2PayloadPool. While no stream runs, the wait for a frame header is
// bounded by IdleTimeout, and the first idleHandoff of it ends with
// errIdleHandoff; while one runs, the client may stay silent.
func (c *h2Conn) readFrame() (typ, flags byte, id uint32, payload *[]byte, err error) {
	for c.hdrN < len(c.hdr) {
		if c.hdrN == 0 {
			if err := c.armIdleDeadline(); err != nil {
				return 0, 0, 0, nil, err
			}
		}
		n, rerr := c.rwc.Read(c.hdr[c.hdrN:])
		c.hdrN += n
		if rerr == nil {
			continue
		}
		var ne net.Error
		if c.hdrN > 0 || !errors.As(rerr, &ne) || !ne.Timeout() {
			return 0, 0, 0, nil, rerr
		}
		c.mu.Lock()
		idle := c.running == 0 && !c.draining
		c.mu.Unlock()
		if idle && !c.handedOff && !c.srv.closing.Load() {
			c.handedOff = true
			return 0, 0, 0, nil, errIdleHandoff
		}
		// armIdleDeadline decides: idle time used up, or a stream started.
	}
	c.hdrN = 0
	c.handedOff = false
	length := int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
	typ, flags = c.hdr[3], c.hdr[4]
	id = binary.BigEndian.Uint32(c.hdr[5:]) & (1<<31 - 1)
	if length > h2FrameSize {
		return 0, 0, 0, nil, h2ConnError{errFrameSize, "frame larger than SETTINGS_MAX_FRAME_SIZE"}
	}
	if length == 0 {
		return typ, flags, id, nil, nil
	}
	c.mu.Lock()
	if c.running == 0 {
		// The idle deadline may be close: give the payload its own.
		c.rwc.SetReadDeadline(time.Now().Add(c.srv.o().ReadHeaderTimeout))
	}
	c.mu.Unlock()
	bp := h2PayloadPool.Get().(*[]byte)
	*bp = (*bp)[:length]
	if _, err := io.ReadFull(c.rwc, *bp); err != nil {
		h2PayloadPool.Put(bp)
		return 0, 0, 0, nil, fmt.Errorf("read http2 frame: %w", err)
	}
	return typ, flags, id, bp, nil
}

// errDrained ends a connection that has no stream left after its GOAWAY.
var errDrained = errors.New("http2 connection drained")

// armIdleDeadline sets the read deadline for the wait for the next frame:
// none while a stream runs (startStream cleared it), else what is left of
// IdleTimeout, cut to idleHandoff before the handoff.
func (c *h2Conn) armIdleDeadline() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running > 0 {
		return nil
	}
	if c.closed || (c.draining && !time.Now().Before(c.drainBy)) {
		return errDrained
	}
	if c.draining {
		c.rwc.SetReadDeadline(c.drainBy)
		return nil
	}
	timeout := c.srv.o().IdleTimeout
	if c.srv.closing.Load() {
		timeout = min(timeout, shutdownIdleGrace)
	}
	left := timeout - time.Since(c.idleSince)
	if left <= 0 {
		return h2ConnError{errNo, "idle timeout"}
	}
	if !c.handedOff {
		left = min(left, idleHandoff)
	}
	c.rwc.SetReadDeadline(time.Now().Add(left))
	return nil
}

// openLocked counts the streams open as the client sees them, the ones
// SETTINGS_MAX_CONCURRENT_STREAMS bounds, and among them those whose body
// is still arriving (h2MaxBodies). A stream the client reset no longer
// counts, even while its handler is still returning: those handlers are
// bounded by chargeReset instead. c.mu must be held.
func (c *h2Conn) openLocked() (open, bodies int) {
	for _, st := range c.streams {
		if !st.done {
			open++
			if !st.remoteClosed {
				bodies++
			}
		}
	}
	return open, bodies
}

// stream returns the open stream id, or nil. c.mu must be held.
func (c *h2Conn) stream(id uint32) *h2Stream {
	for _, st := range c.streams {
		if st.id == id {
			return st
		}
	}
	return nil
}

// recentlyResetLocked reports whether this side reset stream id lately, so
// frames the client sent before seeing that are ignored. c.mu must be held.
func (c *h2Conn) recentlyResetLocked(id uint32) bool {
	for _, r := range c.reset {
		if r == id {
			return true
		}
	}
	return false
}

// resetStream sends RST_STREAM for id and ends the stream if it is open.
func (c *h2Conn) resetStream(id uint32, code uint32) {
	c.mu.Lock()
	if st := c.stream(id); st != nil {
		st.endLocked(errStreamReset)
	}
	c.noteResetLocked(id)
	c.mu.Unlock()
	_ = c.write(time.Time{}, func(b []byte) []byte { return appendRSTStream(b, id, code) })
}

// noteResetLocked remembers that this side reset id. c.mu must be held.
func (c *h2Conn) noteResetLocked(id uint32) {
	c.reset[c.resetN%h2RecentResets] = id
	c.resetN++
}

// goAway tells the client that no stream after the last one it opened will
// be served, with code.
func (c *h2Conn) goAway(code uint32, reason string) {
	c.mu.Lock()
	if !c.draining {
		c.drainBy = time.Now().Add(h2DrainLinger)
	}
	c.draining = true
	last := c.maxID
	c.lastID = last
	c.mu.Unlock()
	if code != errNo {
		c.srv.o().Logger.Debug("http2 connection error", "client", c.remote, "code", code, "reason", reason)
	}
	_ = c.write(time.Time{}, func(b []byte) []byte {
		b = appendFrameHeader(b, 8, frameGoAway, 0, 0)
		b = binary.BigEndian.AppendUint32(b, last)
		return binary.BigEndian.AppendUint32(b, code)
	})
}

// h2DrainLinger is how long a connection is still read after its GOAWAY,
// when no stream runs: a request the client sent before the GOAWAY reached
// it is then ignored (the GOAWAY tells the client to send it again
// elsewhere) instead of meeting a closed socket, whose reset the client
// would see as a failed request. net/http waits a second; this is the
// grace HTTP/1.1 gets.
const h2DrainLinger = shutdownIdleGrace

// shutdown starts a graceful close: GOAWAY now, the connection closes
// when its last stream ends (or, with none, after h2DrainLinger).
func (c *h2Conn) shutdown() {
	c.goAway(errNo, "")
	c.mu.Lock()
	idle := c.running == 0
	c.mu.Unlock()
	if idle {
		c.rwc.SetReadDeadline(aLongTimeAgo)
	}
}

// close ends the connection: every stream still open fails.
func (c *h2Conn) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	for _, st := range c.streams {
		st.endLocked(errStreamReset)
	}
	active := c.running > 0
	c.cond.Broadcast()
	c.mu.Unlock()
	c.rwc.Close()
	if active {
		c.srv.m.ConnState(0, -1)
	} else {
		c.srv.m.ConnState(-1, 0)
	}
	c.srv.track(c, false)
}

// write builds frames with build and writes them in one Write, under
// deadline (zero: WriteTimeout from now). After a failed write the
// connection is dead: it is closed, and every later write fails.
func (c *h2Conn) write(deadline time.Time, build func(b []byte) []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(deadline, build)
}

// writeStream is write for the frames of stream st. It writes nothing, and
// returns errStreamReset, once the stream is over: after a RST_STREAM, in
// either direction, no HEADERS or DATA may follow on it (RFC 9113 5.1).
// The check is under wmu, so a reset racing with this write either comes
// first, and the write is dropped, or is written after it.
func (c *h2Conn) writeStream(st *h2Stream, deadline time.Time, build func(b []byte) []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if st.over.Load() {
		return errStreamReset
	}
	return c.writeLocked(deadline, build)
}

func (c *h2Conn) writeLocked(deadline time.Time, build func(b []byte) []byte) error {
	if c.werr != nil {
		return c.werr
	}
	bp := h2WritePool.Get().(*[]byte)
	b := build((*bp)[:0])
	if deadline.IsZero() {
		deadline = time.Now().Add(c.srv.o().WriteTimeout)
	}
	c.rwc.SetWriteDeadline(deadline)
	_, err := c.rwc.Write(b)
	if cap(b) <= 4*h2FrameSize {
		*bp = b[:0]
		h2WritePool.Put(bp)
	}
	if err != nil {
		c.werr = fmt.Errorf("write http2 frames: %w", err)
		c.rwc.Close() // the reader sees it and ends the streams
		return c.werr
	}
	return nil
}

func appendFrameHeader(b []byte, length int, typ, flags byte, id uint32) []byte {
	b = append(b, byte(length>>16), byte(length>>8), byte(length), typ, flags)
	return binary.BigEndian.AppendUint32(b, id)
}

func appendSetting(b []byte, id uint16, val uint32) []byte {
	b = binary.BigEndian.AppendUint16(b, id)
	return binary.BigEndian.AppendUint32(b, val)
}

func appendWindowUpdate(b []byte, id, inc uint32) []byte {
	b = appendFrameHeader(b, 4, frameWindowUpdate, 0, id)
	return binary.BigEndian.AppendUint32(b, inc)
}

func appendRSTStream(b []byte, id, code uint32) []byte {
	b = appendFrameHeader(b, 4, frameRSTStream, 0, id)
	return binary.BigEndian.AppendUint32(b, code)
}

// statusString renders an HTTP status code for :status without allocating
// for the common ones.
func statusString(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 206:
		return "206"
	case 301:
		return "301"
	case 302:
		return "302"
	case 304:
		return "304"
	case 400:
		return "400"
	case 404:
		return "404"
	case 500:
		return "500"
	case 502:
		return "502"
	case 503:
		return "503"
	}
	return strconv.Itoa(code)
}
