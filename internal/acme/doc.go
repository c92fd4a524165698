// Package acme obtains and renews certificates by ACME (Let's Encrypt,
// ZeroSSL, any RFC 8555 CA) with CertMagic, Caddy's engine: storage with
// locking, renewal ahead of expiry with ARI and jitter, retries with
// backoff, OCSP stapling.
//
// A [Manager] is built once with [New], which checks its options and reads
// the CA root without touching the network. [Manager.Start] begins
// managing the names once the listeners are bound: certificates already in
// storage are loaded (so a reload or a binary upgrade orders nothing), the
// missing ones are obtained in the background, and a maintenance loop
// renews them. Until a name has a certificate its handshakes get the
// caller's fallback certificate.
//
// Challenges are answered on Bulwark's own listeners, never on sockets of
// the engine's: http-01 by [Manager.HTTPHandler] wrapped around the plain
// listener's handler, tls-alpn-01 by [Manager.GetCertificate] when a
// ClientHello offers only the acme-tls/1 protocol (internal/tlsconf adds
// that protocol to its ALPN list). Challenge data is kept in storage, so
// several instances sharing storage answer each other's challenges.
//
// A CA's rateLimited refusal (RFC 8555 §6.6) holds the name until the
// time the CA gave: the engine retries on a fixed schedule of its own, so
// the attempts before that time are refused here, before any request, and
// the hold is kept in storage for the next process (hold.go).
//
// What this package leaves to callers: choosing between certificate files
// and ACME for a name (internal/tlsconf serves a name from a file when one
// covers it), binding sockets, and rendering [Manager.Status].
package acme
