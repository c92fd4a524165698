package spool

import (
	"bulwark/internal/clientip"
	"net/http"
	"net/netip"
	"sync"
)

// addrCounts counts the request bodies being received per client address.
// Its zero value is ready; entries are removed at zero, so its size follows
// the bodies in flight.
type addrCounts struct {
	mu sync.Mutex
	n  map[netip.Addr]int
}

// acquire counts one more body from addr, or reports false when addr has
// limit already. A limit of zero or less means no cap.
func (a *addrCounts) acquire(addr netip.Addr, limit int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = make(map[netip.Addr]int)
	}
	if limit > 0 && a.n[addr] >= limit {
		return false
	}
	a.n[addr]++
	return true
}

// release counts one body from addr less.
func (a *addrCounts) release(addr netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n[addr] <= 1 {
		delete(a.n, addr)
		return
	}
	a.n[addr]--
}

// clientKey is who a request's body is counted against for BodiesPerIP:
// the client as the connection caps and the rate limit see it.
func (s *Spool) clientKey(r *http.Request) netip.Addr {
	return clientip.Key(clientip.Of(r.RemoteAddr, r.Header["X-Forwarded-For"], s.o().TrustedProxies))
}
