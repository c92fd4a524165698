// Package tlsconf owns everything about the certificates Bulwark serves with:
// loading and validating certificate/key files, choosing a certificate per
// handshake (SNI, then ECDSA or RSA by what the client supports), reloading
// the files atomically when they change on disk, session ticket keys, and the
// self-signed development certificate used when no pair is configured.
//
// A [Store] is built once with [New]. Its [Store.TLSConfig] is built once too:
// the returned *tls.Config answers every handshake through
// GetConfigForClient, which reads an atomically swapped snapshot, so
// [Store.Reload], [Store.Update] and the file watcher in [Store.Run] apply to
// new handshakes without the listener being rebuilt. A failed reload never
// replaces what is being served; the old certificates stay until a complete,
// valid set is on disk.
//
// # Session ticket key file
//
// When Options.TicketKeyFile is set, several Bulwark instances behind one
// name can resume each other's TLS sessions. The file holds one or more
// 32-byte keys, either
//
//   - raw binary: the file length is a multiple of 32 bytes, each 32-byte
//     block is one key; or
//   - text: one standard base64 key per line (44 characters, for example the
//     output of `openssl rand -base64 32`); blank lines and lines starting
//     with '#' are ignored.
//
// The first key encrypts new tickets; every key decrypts. Bulwark never
// writes the file: operators rotate it themselves, typically with a daily
// cron job on one machine that prepends a fresh key, keeps the previous one
// or two, and copies the file to every instance (the file is re-read every
// minute and when it changes). Keep it private (mode 0600): anyone holding a
// key can decrypt recorded sessions that used it.
//
// Without a key file, keys are generated in memory and rotated every
// Options.TicketRotation, keeping the previous key so a ticket stays valid
// for between one and two rotation periods.
//
// What this package leaves to callers: it does not bind sockets or count
// handshakes (internal/front does), and it does not log reload errors it
// returns (the caller decides; only the watcher in Run logs its own).
package tlsconf
