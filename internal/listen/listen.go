// Package listen opens the TCP listeners Bulwark serves on with a chosen
// listen(2) backlog, and sets the backlog of a listener inherited during an
// upgrade. It is its own package so that the upgrade code, which hands
// sockets over, needs no server package.
package listen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// DefaultBacklog is the listen(2) backlog used when TCP is given zero.
const DefaultBacklog = 2048

// TCP opens a TCP listener on addr ("host:port", "[::1]:port" or ":port")
// with the given listen(2) backlog.
//
// Go's net package always passes the kernel's somaxconn as the backlog.
// Linux lets listen(2) be called again on a listening socket, which only
// changes the backlog, so TCP binds with the net package (keeping its
// dual-stack and address handling) and then sets the backlog on the socket.
// The kernel still caps the value at net.core.somaxconn.
func TCP(ctx context.Context, addr string, backlog int) (net.Listener, error) {
	if backlog <= 0 {
		backlog = DefaultBacklog
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	if err := SetBacklog(ln, backlog); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// SetBacklog changes the listen(2) backlog of a listening TCP socket, such
// as one inherited from a previous process during an upgrade.
func SetBacklog(ln net.Listener, backlog int) error {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return errors.New("set backlog: listener has no file descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("set backlog: %w", err)
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) { lerr = syscall.Listen(int(fd), backlog) }); err != nil {
		return fmt.Errorf("set backlog: %w", err)
	}
	if lerr != nil {
		return fmt.Errorf("set backlog %d: %w", backlog, lerr)
	}
	return nil
}
