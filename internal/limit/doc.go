// Package limit keeps one client from exhausting the box: caps on open
// client connections, for all clients and per client address (nginx's
// limit_conn), a reserve of file descriptors that client connections may
// not take, and a request rate per client address (nginx's limit_req).
//
// Connections are counted at accept, before the TLS handshake, so that a
// refused one costs a few microseconds and no memory. Every refusal is
// counted in bulwark_rejected_total{reason}, the reason being the key that
// refused it (max_conns, max_conns_per_ip, fd_reserve, rate_per_ip).
//
// Memory is bounded: the per-address connection table holds only addresses
// with a connection open, and the rate table holds at most MaxClients
// addresses, dropping those whose bucket has filled up again.
package limit

// Reasons, the label values of bulwark_rejected_total. Each is the name of
// the configuration key whose limit refused the client, except fd_reserve.
const (
	ReasonMaxConns      = "max_conns"
	ReasonMaxConnsPerIP = "max_conns_per_ip"
	ReasonFDReserve     = "fd_reserve"
	ReasonRate          = "rate_per_ip"
)

// rejectedName is the series of refusals for a reason.
func rejectedName(reason string) string {
	return `bulwark_rejected_total{reason="` + reason + `"}`
}
