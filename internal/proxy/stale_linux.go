package proxy

import (
	"net"
	"syscall"
)

// peerClosed reports whether the app has already closed c: a peek that
// neither blocks nor consumes finds end-of-file or a reset.
func peerClosed(c net.Conn) bool {
	var pk peeker
	closed, _ := pk.check(c)
	return closed
}

// peeker looks at a connection without reading from it: with Control and
// MSG_PEEK|MSG_DONTWAIT, so nothing is consumed and nothing waits. It keeps
// the raw connection and the callback, so checks after the first allocate
// nothing. It is for one goroutine at a time.
type peeker struct {
	rc      syscall.RawConn
	fn      func(fd uintptr)
	buf     [1]byte
	closed  bool
	pending bool
}

// check reports whether the app closed c, and whether bytes are waiting to
// be read on it.
func (pk *peeker) check(c net.Conn) (closed, pending bool) {
	if pk.fn == nil {
		sc, ok := c.(syscall.Conn)
		if !ok {
			return false, false
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return false, false
		}
		pk.rc = rc
		pk.fn = func(fd uintptr) {
			n, _, err := syscall.Recvfrom(int(fd), pk.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			pk.closed = (n == 0 && err == nil) || err == syscall.ECONNRESET
			pk.pending = n > 0
		}
	}
	pk.closed, pk.pending = false, false
	if err := pk.rc.Control(pk.fn); err != nil {
		return false, false
	}
	return pk.closed, pk.pending
}
