package front

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// Lingering close (nginx's lingering_close): a connection closed while the
// client may still be sending its request is first half-closed and read
// from, its bytes thrown away, so the client can read the answer. Closing at
// once with unread bytes in the socket makes the kernel send a reset, which
// a client that writes its whole body before reading (curl, Python's
// http.client, browsers' fetch) sees as a send error instead of the 413.
const (
	// lingerTime bounds the whole lingering (nginx lingering_time).
	lingerTime = 30 * time.Second
	// lingerTimeout bounds the wait for each read (nginx lingering_timeout):
	// a client that stops sending is done, or gone.
	lingerTimeout = 5 * time.Second
	// lingerMaxBytes bounds what is read and thrown away. nginx bounds only
	// the time, which lets a fast client push gigabytes in 30 s; 64 MiB
	// covers the rest of a rejected upload of the size people make from a
	// browser or a phone (tens of MB), costs a few tens of milliseconds of
	// CPU on the raw socket (nothing is decrypted), and is no more than a
	// client could make Bulwark read as a body anyway. A larger upload is
	// reset after it, as it was before lingering.
	lingerMaxBytes = 64 << 20
	// lingerBufSize is the discard buffer, pooled and held only while a
	// connection lingers.
	lingerBufSize = 16 << 10
)

var lingerPool = sync.Pool{New: func() any { return new([lingerBufSize]byte) }}

// lingerClose half-closes the connection after its answer was flushed and
// reads and discards what the client still sends, until it closes its side,
// stops sending for lingerTimeout, or lingerTime or lingerMaxBytes run out.
// While the server shuts down it lingers shutdownIdleGrace at most (Shutdown
// shortens the deadline of a lingering connection, which counts as idle, as
// it does an idle one's), and Close ends it at once.
func (c *h1Conn) lingerClose() {
	raw := halfClose(c.rwc)
	if raw == nil {
		return
	}
	// Lingering connections wait on one byte: the discard buffer is taken
	// only when bytes have come, to drain what is there at once, and given
	// back before waiting again. A client that trickles a byte now and then
	// (thousands of them, from many addresses) holds no buffer; one that
	// pushes its upload holds one while it pushes.
	var one [1]byte
	end := time.Now().Add(lingerTime)
	shut := false
	for total := 0; total < lingerMaxBytes; {
		now := time.Now()
		if !shut && c.srv.closing.Load() {
			shut = true
			end = earlier(end, now.Add(shutdownIdleGrace))
		}
		if !now.Before(end) {
			return
		}
		raw.SetReadDeadline(earlier(now.Add(lingerTimeout), end))
		if !shut && c.srv.closing.Load() {
			continue // Shutdown's shorter deadline may have been overwritten
		}
		n, err := raw.Read(one[:])
		total += n
		if err != nil {
			return
		}
		drained, err := drainReady(raw, lingerMaxBytes-total)
		total += drained
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
	}
}

// lingerDrainWait is how long drainReady waits for more bytes: it reads
// what has already arrived, not what is still coming.
const lingerDrainWait = time.Millisecond

// drainReady reads and discards up to max bytes that are ready on raw, in
// a pooled buffer held only meanwhile. It returns after a read that did
// not fill the buffer, or an error (os.ErrDeadlineExceeded: nothing more
// was ready).
func drainReady(raw net.Conn, max int) (int, error) {
	buf := lingerPool.Get().(*[lingerBufSize]byte)
	defer lingerPool.Put(buf)
	total := 0
	for total < max {
		raw.SetReadDeadline(time.Now().Add(lingerDrainWait))
		n, err := raw.Read(buf[:min(len(buf), max-total)])
		total += n
		if err != nil || n < len(buf) {
			return total, err
		}
	}
	return total, nil
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// halfClose ends the sending side of rwc, with a close_notify alert first
// on TLS, and returns the connection to read the rest of the request from:
// the raw TCP connection, since what comes now is thrown away undecrypted.
// It returns nil when the connection cannot be half-closed.
func halfClose(rwc net.Conn) net.Conn {
	raw := rwc
	if tc, ok := rwc.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return nil
		}
		raw = tc.NetConn()
	}
	cw, ok := raw.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return nil
	}
	return raw
}
