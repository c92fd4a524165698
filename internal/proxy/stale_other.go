//go:build !linux

package proxy

import "net"

// peerClosed reports false: the early check is Linux-only, and the
// upstream client's replay of idempotent requests still covers the rest.
func peerClosed(net.Conn) bool { return false }

// peeker is Linux-only; elsewhere it sees nothing.
type peeker struct{}

func (*peeker) check(net.Conn) (closed, pending bool) { return false, false }
