package h2

import (
	"time"
)

// Limits on what one HTTP/2 connection may make the server do.
//
// Rapid reset (CVE-2023-44487): a client opens a stream and resets it at
// once, again and again. Each costs a handler start, and often a request to
// the app, while the client pays two small frames and never counts against
// the concurrent stream limit for long. nginx and Go's x/net end such a
// connection with GOAWAY ENHANCE_YOUR_CALM; here each stream the client
// resets before its answer is complete, and each stream this side refuses,
// is charged to the connection, and past an allowance the connection ends.
const (
	// h2ResetRefill is how often one charge is forgiven: 10 a second, so
	// that a browser cancelling the requests of pages it leaves (all it has
	// in flight at once, at most MaxConcurrentStreams, which is the burst
	// allowed) is never near the limit, while a flood of thousands of
	// resets a second is cut off within its first MaxConcurrentStreams.
	// Varnish allows 100 resets a minute by default; this is more lenient,
	// because a reset here costs less (a stream reset before its handler
	// runs never starts it).
	h2ResetRefill = 100 * time.Millisecond
)

// h2MaxBodies caps the streams of one connection whose request body is
// still arriving. Each may hold a handler, a request to the app and a body
// buffer while the client trickles bytes; without this cap 100 such streams
// a connection let one client take hundreds of MB. 32 is far above what a
// browser uploads at once: upload libraries are tuned for HTTP/1.1's six
// connections per origin and default to 3 to 6 parallel uploads; and even a
// burst of 50 that the browser retries after REFUSED_STREAM stays within
// the reset allowance. Streams without a body are not capped by it.
const h2MaxBodies = 32

// chargeReset charges the connection for one stream the client reset
// before its answer was complete, or that this side refused. Past the
// allowance it returns a connection error: GOAWAY ENHANCE_YOUR_CALM, and
// the connection closes. Called by the reader goroutine only.
func (c *h2Conn) chargeReset(now time.Time) error {
	if c.resets == 0 {
		c.resetsAt = now
	} else if n := int(now.Sub(c.resetsAt) / h2ResetRefill); n > 0 {
		c.resets = max(c.resets-n, 0)
		c.resetsAt = c.resetsAt.Add(time.Duration(n) * h2ResetRefill)
	}
	c.resets++
	if c.resets > c.srv.o().MaxConcurrentStreams {
		c.srv.m.Rejected(ReasonRapidReset)
		return h2ConnError{errEnhanceYourCalm, "too many streams reset or refused"}
	}
	return nil
}

// refuseStream refuses stream id with REFUSED_STREAM (the client may send
// it again, RFC 9113 8.7), counted under reason, and charges the
// connection for it.
func (c *h2Conn) refuseStream(id uint32, reason, msg string) error {
	c.srv.m.Rejected(reason)
	if err := c.chargeReset(time.Now()); err != nil {
		return err
	}
	return h2StreamError{id, errRefusedStream, msg}
}
