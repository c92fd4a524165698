package h2

import (
	"encoding/binary"
	"errors"
	"time"
)

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
