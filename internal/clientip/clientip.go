// Package clientip says who a client is: the peer address of its
// connection, or, when that peer is a trusted proxy, the address the proxy
// chain names in X-Forwarded-For; and the key under which per-client limits
// count it. The proxy (X-Real-IP) and the limits both use it, so that the
// app and the limits always agree on who the client is.
package clientip

import (
	"net"
	"net/netip"
	"strings"
)

// Peer returns the IP of a RemoteAddr ("203.0.113.7:5555", "[::1]:443") as
// text and parsed; the Addr is the zero Addr when it is not an IP, and an
// IPv4-mapped IPv6 address is returned as IPv4.
func Peer(remoteAddr string) (string, netip.Addr) {
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		a := ap.Addr().Unmap()
		// The address as RemoteAddr spells it, when that is how a.String()
		// spells it (almost always: the kernel's address, printed by
		// net), saves formatting it again: an allocation per request.
		host := remoteAddr[:strings.LastIndexByte(remoteAddr, ':')]
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		var buf [64]byte
		if string(a.AppendTo(buf[:0])) == host {
			return host, a
		}
		return a.String(), a
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return host, a.Unmap()
}

// Trusted reports whether a is inside one of the trusted prefixes.
func Trusted(a netip.Addr, trusted []netip.Prefix) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, pfx := range trusted {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// Real walks chain (the X-Forwarded-For value a trusted peer sent) from the
// right and returns the first address that is not a trusted proxy. If
// every address is trusted it returns the left-most one; an entry that is
// not an address stops the walk at the hop to its right, which a trusted
// proxy vouched for (peer, when it is the right-most entry).
func Real(chain string, peer netip.Addr, trusted []netip.Prefix) netip.Addr {
	last := peer
	for chain != "" {
		var entry string
		if i := strings.LastIndexByte(chain, ','); i >= 0 {
			entry, chain = chain[i+1:], chain[:i]
		} else {
			entry, chain = chain, ""
		}
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		a, ok := parseXFFEntry(entry)
		if !ok {
			return last
		}
		last = a
		if !Trusted(a, trusted) {
			return last
		}
	}
	return last
}

// parseXFFEntry parses one X-Forwarded-For element: an IP, optionally with
// a port ("1.2.3.4:80", "[::1]:80").
func parseXFFEntry(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// Of returns the client address of a request whose connection came from
// remoteAddr and which carried the X-Forwarded-For values xff: the peer,
// unless the peer is trusted and xff is not empty; then Real over the
// joined values. The zero Addr when the peer is not an IP.
func Of(remoteAddr string, xff []string, trusted []netip.Prefix) netip.Addr {
	_, peer := Peer(remoteAddr)
	if len(trusted) == 0 || len(xff) == 0 || !Trusted(peer, trusted) {
		return peer
	}
	chain := xff[0]
	if len(xff) > 1 {
		chain = strings.Join(xff, ", ")
	}
	return Real(chain, peer, trusted)
}

// Key returns the address per-client limits count a is counted under: an
// IPv4 address itself, and an IPv6 address's /64.
//
// nginx counts per address ($binary_remote_addr). For IPv6 that counts
// nothing: a client is normally given a whole /64 (one home line, one VPS)
// and may use any of its 2^64 addresses, so an attacker would open each
// connection from a new address and never meet a per-address limit. A /64
// is what one IPv4 address is, one subscriber; clients sharing one (a
// home network) share a limit as clients behind one NAT address do.
func Key(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64) // cannot fail for an IPv6 address and 64
		return p.Addr()
	}
	return a
}
