// Package spool shields the application from slow clients by spooling
// request and response bodies: the first bytes of a body in memory (pooled
// segments, small first, under one memory budget), the rest in an exclusive
// temp file under a spool directory (under one disk cap and a cap on the
// files open). Request bodies arriving at once are capped per client
// address, so that one client cannot hold the spool.
//
// [Spool.Requests] reads a whole request body before the next handler runs,
// so a slow upload never holds one of the application's concurrency slots;
// the application then reads the body at disk speed with an exact
// Content-Length. [Spool.Responses] lets the next handler write its answer
// into a spool as fast as the application produces it, while a copier feeds
// the client at the client's pace; the handler returns (and its slot is freed)
// as soon as the application is done. Streams (text/event-stream, WebSocket
// upgrades, answers carrying "X-Accel-Buffering: no", configured path
// prefixes, and answers without a body) are passed through unbuffered.
//
// Temp files are created with mode 0600 and unlinked at once, so nothing is
// left behind when the process dies; [New] still sweeps files matching the
// package's own name pattern in case a crash came between create and unlink.
//
// The package leaves to callers: the order of middleware (Responses outside
// the concurrency limiter, Requests inside it but before the slot is taken),
// header and read timeouts on the client connection, and the choice of the
// spool directory's file system ([CheckDir] warns about tmpfs).
package spool
