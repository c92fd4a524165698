package spool

import (
	"net"
	"sync"
)

// addrCounts counts the request bodies being received per client address.
// Its zero value is ready; entries are removed at zero, so its size follows
// the bodies in flight.
type addrCounts struct {
	mu sync.Mutex
	n  map[string]int
}

// acquire counts one more body from addr, or reports false when addr has
// limit already. A limit of zero or less means no cap.
func (a *addrCounts) acquire(addr string, limit int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = make(map[string]int)
	}
	if limit > 0 && a.n[addr] >= limit {
		return false
	}
	a.n[addr]++
	return true
}

// release counts one body from addr less.
func (a *addrCounts) release(addr string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n[addr] <= 1 {
		delete(a.n, addr)
		return
	}
	a.n[addr]--
}

// peerHost is the client address of a request's RemoteAddr ("host:port"):
// its host, or the whole string when it has no port.
func peerHost(remoteAddr string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return host
	}
	return remoteAddr
}
