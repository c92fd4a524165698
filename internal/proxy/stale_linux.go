package proxy

import (
	"net"
	"syscall"
)

// peerClosed reports whether the app has already closed c: a peek that
// neither blocks nor consumes finds end-of-file or a reset. It uses Control,
// not Read, because the Transport keeps a Read pending on idle connections.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	_ = rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = (n == 0 && err == nil) || err == syscall.ECONNRESET
	})
	return closed
}
