package h2

import (
	"encoding/binary"
	"io"
	"time"
)

// Applying the frames a client sends: the reader goroutine's side of an
// HTTP/2 connection.

// processFrame applies one frame. A returned h2StreamError resets that
// stream; any other error ends the connection.
func (c *h2Conn) processFrame(typ, flags byte, id uint32, p []byte) error {
	if c.contID != 0 && typ != frameContinuation {
		return h2ConnError{errProtocol, "frame inside a header block"}
	}
	if !c.settled {
		if typ != frameSettings || flags&flagAck != 0 {
			return h2ConnError{errProtocol, "first frame is not SETTINGS"}
		}
		c.settled = true
	}
	switch typ {
	case frameData:
		return c.processData(flags, id, p)
	case frameHeaders:
		return c.processHeaders(flags, id, p)
	case frameContinuation:
		if c.contID == 0 || id != c.contID {
			return h2ConnError{errProtocol, "unexpected CONTINUATION"}
		}
		return c.blockFragment(p, flags&flagEndHeaders != 0)
	case framePriority:
		if id == 0 {
			return h2ConnError{errProtocol, "PRIORITY on stream 0"}
		}
		if len(p) != 5 {
			return h2StreamError{id, errFrameSize, "PRIORITY length"}
		}
		if binary.BigEndian.Uint32(p)&(1<<31-1) == id {
			return h2StreamError{id, errProtocol, "stream depends on itself"}
		}
		return nil
	case frameRSTStream:
		if len(p) != 4 {
			return h2ConnError{errFrameSize, "RST_STREAM length"}
		}
		if id == 0 || id > c.maxID || id%2 == 0 {
			return h2ConnError{errProtocol, "RST_STREAM on an idle stream"}
		}
		c.mu.Lock()
		st := c.stream(id)
		// A stream reset before its answer was complete may have cost a
		// handler, and a request to the app, for nothing.
		early := st != nil && !st.over.Load()
		if st != nil {
			st.endLocked(errStreamReset)
		}
		c.mu.Unlock()
		if early {
			return c.chargeReset(time.Now())
		}
		return nil
	case frameSettings:
		return c.processSettings(flags, id, p)
	case framePushPromise:
		return h2ConnError{errProtocol, "PUSH_PROMISE from a client"}
	case framePing:
		if len(p) != 8 {
			return h2ConnError{errFrameSize, "PING length"}
		}
		if id != 0 {
			return h2ConnError{errProtocol, "PING on a stream"}
		}
		if flags&flagAck != 0 {
			return nil
		}
		return c.write(time.Time{}, func(b []byte) []byte {
			b = appendFrameHeader(b, 8, framePing, flagAck, 0)
			return append(b, p...)
		})
	case frameGoAway:
		if id != 0 {
			return h2ConnError{errProtocol, "GOAWAY on a stream"}
		}
		if len(p) < 8 {
			// Too short for its last stream ID and error code (RFC 9113
			// 4.2, 6.8).
			return h2ConnError{errFrameSize, "GOAWAY length"}
		}
		return nil // the client will close; its streams still finish
	case frameWindowUpdate:
		return c.processWindowUpdate(id, p)
	default:
		return nil // unknown frame types are ignored
	}
}

func (c *h2Conn) processSettings(flags byte, id uint32, p []byte) error {
	if id != 0 {
		return h2ConnError{errProtocol, "SETTINGS on a stream"}
	}
	if flags&flagAck != 0 {
		if len(p) != 0 {
			return h2ConnError{errFrameSize, "SETTINGS ACK with a payload"}
		}
		return nil
	}
	if len(p)%6 != 0 {
		return h2ConnError{errFrameSize, "SETTINGS length"}
	}
	for ; len(p) > 0; p = p[6:] {
		val := binary.BigEndian.Uint32(p[2:])
		switch binary.BigEndian.Uint16(p) {
		case settingEnablePush:
			if val > 1 {
				return h2ConnError{errProtocol, "SETTINGS_ENABLE_PUSH not 0 or 1"}
			}
		case settingInitialWindowSize:
			if val > h2MaxWindow {
				return h2ConnError{errFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE too large"}
			}
			c.mu.Lock()
			delta := int64(val) - c.peerWindow
			c.peerWindow = int64(val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > h2MaxWindow {
					c.mu.Unlock()
					return h2ConnError{errFlowControl, "stream window overflow"}
				}
			}
			c.cond.Broadcast()
			c.mu.Unlock()
		case settingMaxFrameSize:
			if val < h2FrameSize || val > 1<<24-1 {
				return h2ConnError{errProtocol, "SETTINGS_MAX_FRAME_SIZE out of range"}
			}
		}
		// The header table size only bounds our encoder, which uses
		// none; the other settings concern a client's own streams.
	}
	return c.write(time.Time{}, func(b []byte) []byte {
		return appendFrameHeader(b, 0, frameSettings, flagAck, 0)
	})
}

func (c *h2Conn) processWindowUpdate(id uint32, p []byte) error {
	if len(p) != 4 {
		return h2ConnError{errFrameSize, "WINDOW_UPDATE length"}
	}
	inc := int64(binary.BigEndian.Uint32(p) & (1<<31 - 1))
	if id == 0 {
		if inc == 0 {
			return h2ConnError{errProtocol, "WINDOW_UPDATE of 0"}
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.sendWindow += inc
		if c.sendWindow > h2MaxWindow {
			return h2ConnError{errFlowControl, "connection window overflow"}
		}
		c.cond.Broadcast()
		return nil
	}
	if id > c.maxID || id%2 == 0 {
		// An even ID is a server stream, and this server opens none: it
		// is idle whatever the client opened (RFC 9113 5.1.1).
		return h2ConnError{errProtocol, "WINDOW_UPDATE on an idle stream"}
	}
	if inc == 0 {
		return h2StreamError{id, errProtocol, "WINDOW_UPDATE of 0"}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stream(id)
	if st == nil || st.done {
		return nil
	}
	st.sendWindow += inc
	if st.sendWindow > h2MaxWindow {
		return h2StreamError{id, errFlowControl, "stream window overflow"}
	}
	c.cond.Broadcast()
	return nil
}

// unpad strips the padding of a DATA or HEADERS payload p. It reports
// false when the padding is as long as the payload or longer, which is a
// connection error (RFC 9113 6.1, 6.2).
func unpad(flags byte, p []byte) ([]byte, bool) {
	if flags&flagPadded == 0 {
		return p, true
	}
	if len(p) == 0 || int(p[0]) >= len(p) {
		return nil, false
	}
	return p[1 : len(p)-int(p[0])], true
}

func (c *h2Conn) processData(flags byte, id uint32, p []byte) error {
	if id == 0 {
		return h2ConnError{errProtocol, "DATA on stream 0"}
	}
	if id > c.maxID || id%2 == 0 {
		return h2ConnError{errProtocol, "DATA on an idle stream"}
	}
	data, ok := unpad(flags, p)
	if !ok {
		return h2ConnError{errProtocol, "DATA padding"}
	}
	n := int64(len(p))
	c.mu.Lock()
	if n > c.recvWindow {
		c.mu.Unlock()
		return h2ConnError{errFlowControl, "DATA beyond the connection window"}
	}
	c.recvWindow -= n
	st := c.stream(id)
	if st == nil || st.remoteClosed || st.done {
		inc := c.grantLocked(nil, n)
		ignore := c.recentlyResetLocked(id)
		c.mu.Unlock()
		c.sendWindowUpdates(id, inc)
		if ignore {
			return nil
		}
		return h2StreamError{id, errStreamClosed, "DATA on a closed stream"}
	}
	if n > st.recvWindow {
		inc := c.grantLocked(nil, n)
		c.mu.Unlock()
		c.sendWindowUpdates(id, inc)
		return h2StreamError{id, errFlowControl, "DATA beyond the stream window"}
	}
	st.recvWindow -= n
	st.received += int64(len(data))
	if st.declared >= 0 && (st.received > st.declared ||
		flags&flagEndStream != 0 && st.received != st.declared) {
		inc := c.grantLocked(nil, n)
		c.mu.Unlock()
		c.sendWindowUpdates(id, inc)
		return h2StreamError{id, errProtocol, "body length differs from content-length"}
	}
	// Padding, and data no handler will read, are granted back at once.
	free := n - int64(len(data))
	if st.bodyClosed {
		free = n
	} else if len(data) > 0 {
		st.body = append(st.body, data...)
	}
	if flags&flagEndStream != 0 {
		st.remoteClosed = true
		if st.bodyErr == nil {
			st.bodyErr = io.EOF
		}
	}
	var inc windowGrant
	if free > 0 {
		inc = c.grantLocked(st, free)
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	c.sendWindowUpdates(id, inc)
	return nil
}

// windowGrant is a WINDOW_UPDATE pair to send: connection and stream.
type windowGrant struct{ conn, stream uint32 }

// grantLocked records n bytes consumed (read by the handler or discarded)
// and returns the window increments due: an increment is sent once half a
// window is used up, so that a steady upload gets few WINDOW_UPDATEs.
func (c *h2Conn) grantLocked(st *h2Stream, n int64) windowGrant {
	var g windowGrant
	c.recvUnacked += n
	if c.recvUnacked >= h2ConnWindow/2 || c.recvWindow < h2ConnWindow/2 {
		g.conn = uint32(c.recvUnacked)
		c.recvWindow += c.recvUnacked
		c.recvUnacked = 0
	}
	if st != nil && !st.remoteClosed && !st.done {
		st.recvUnacked += n
		if st.recvUnacked >= h2StreamWindow/2 {
			g.stream = uint32(st.recvUnacked)
			st.recvWindow += st.recvUnacked
			st.recvUnacked = 0
		}
	}
	return g
}

func (c *h2Conn) sendWindowUpdates(id uint32, g windowGrant) {
	if g.conn == 0 && g.stream == 0 {
		return
	}
	_ = c.write(time.Time{}, func(b []byte) []byte {
		if g.conn > 0 {
			b = appendWindowUpdate(b, 0, g.conn)
		}
		if g.stream > 0 {
			b = appendWindowUpdate(b, id, g.stream)
		}
		return b
	})
}

func (c *h2Conn) processHeaders(flags byte, id uint32, p []byte) error {
	if id == 0 || id%2 == 0 {
		return h2ConnError{errProtocol, "HEADERS on stream 0 or a server stream"}
	}
	frag, ok := unpad(flags, p)
	if !ok {
		return h2ConnError{errProtocol, "HEADERS padding"}
	}
	selfDep := false
	if flags&flagPriority != 0 {
		if len(frag) < 5 {
			return h2ConnError{errFrameSize, "HEADERS priority"}
		}
		selfDep = binary.BigEndian.Uint32(frag)&(1<<31-1) == id
		frag = frag[5:]
	}
	c.blk.begin(c, id, flags&flagEndStream != 0)
	c.blk.selfDep = selfDep
	if id <= c.maxID {
		c.mu.Lock()
		st := c.stream(id)
		// Decoded anyway, to keep the HPACK state, then refused: on a
		// stream both sides ended (it lingers until its handler returns)
		// with a connection error, on one only the client ended with a
		// stream error (RFC 9113 5.1).
		c.blk.closed = st == nil || st.remoteClosed || st.done
		c.blk.trailers = st != nil && !(st.remoteClosed && st.over.Load())
		c.blk.ignore = c.recentlyResetLocked(id)
		c.mu.Unlock()
	}
	if flags&flagEndHeaders == 0 {
		c.contID = id
	}
	return c.blockFragment(frag, flags&flagEndHeaders != 0)
}

// blockFragment feeds part of a header block to the decoder and, at its
// end, acts on the block.
func (c *h2Conn) blockFragment(frag []byte, end bool) error {
	// A head past the limit is still decoded so that it can be answered
	// 431, but not without end: an endless run of CONTINUATION frames
	// would burn CPU forever (CVE-2024-27316).
	c.blk.raw += len(frag)
	if c.blk.raw > 4*c.blk.limit+h2FrameSize {
		return h2ConnError{errEnhanceYourCalm, "header block far past the limit"}
	}
	if _, err := c.dec.Write(frag); err != nil {
		return h2ConnError{errCompression, "hpack: " + err.Error()}
	}
	if !end {
		return nil
	}
	c.contID = 0
	if err := c.dec.Close(); err != nil {
		return h2ConnError{errCompression, "hpack: " + err.Error()}
	}
	return c.endBlock()
}

func (c *h2Conn) endBlock() error {
	b := &c.blk
	defer b.clear()
	id := b.id
	switch {
	case b.closed && b.trailers:
		return h2StreamError{id, errStreamClosed, "HEADERS on a half-closed stream"}
	case b.closed && b.ignore:
		return nil
	case b.closed:
		return h2ConnError{errStreamClosed, "HEADERS on a closed stream"}
	case b.trailers:
		return c.endTrailers(b)
	}
	c.mu.Lock() // goAway reads it from Shutdown's goroutine
	c.maxID = id
	c.mu.Unlock()
	if b.selfDep {
		return h2StreamError{id, errProtocol, "stream depends on itself"}
	}
	if b.malformed != "" {
		return h2StreamError{id, errProtocol, b.malformed}
	}
	c.mu.Lock()
	if c.draining || c.closed {
		c.mu.Unlock()
		return nil // after our GOAWAY: the client retries elsewhere
	}
	open, bodies := c.openLocked()
	if open >= c.srv.o().MaxConcurrentStreams {
		c.mu.Unlock()
		return c.refuseStream(id, ReasonStreamsPerConn, "too many concurrent streams")
	}
	if !b.endStream && bodies >= h2MaxBodies {
		c.mu.Unlock()
		return c.refuseStream(id, ReasonBodiesPerConn, "too many request bodies in flight")
	}
	c.mu.Unlock()
	ctx, cancel := c.srv.requestContext()
	req, herr, err := c.newRequest(ctx, b)
	if err != nil {
		cancel()
		return h2StreamError{id, errProtocol, err.Error()}
	}
	c.startStream(req, cancel, b, herr)
	return nil
}

// endTrailers completes a request body with its trailers.
func (c *h2Conn) endTrailers(b *headerBlock) error {
	if !b.endStream {
		return h2StreamError{b.id, errProtocol, "trailers without END_STREAM"}
	}
	if b.malformed != "" || b.sawPseudo {
		return h2StreamError{b.id, errProtocol, "malformed trailers"}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stream(b.id)
	if st == nil {
		return nil
	}
	if st.declared >= 0 && st.received != st.declared {
		return h2StreamError{b.id, errProtocol, "body length differs from content-length"}
	}
	if st.trailerNames != nil && !st.bodyClosed {
		st.keepTrailerLocked(b.header)
	}
	st.remoteClosed = true
	if st.bodyErr == nil {
		st.bodyErr = io.EOF
	}
	c.cond.Broadcast()
	return nil
}
