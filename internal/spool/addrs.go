package spool

import (
	"net/http"
	"net/netip"

	"bulwark/internal/clientip"
)

// clientKey is who a request's body is counted against for BodiesPerIP:
// the client as the connection caps and the rate limit see it.
func (s *Spool) clientKey(r *http.Request) netip.Addr {
	return clientip.Key(clientip.Of(r.RemoteAddr, r.Header["X-Forwarded-For"], s.o().TrustedProxies))
}
