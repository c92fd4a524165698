//go:build !linux

package proxy

import "net"

// peerClosed reports false: the early check is Linux-only, and the
// Transport's own retry still covers idempotent requests.
func peerClosed(net.Conn) bool { return false }
