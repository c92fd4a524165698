package h2

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"
)

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
