// Package memwatch measures memory without forking anything: the resident
// and proportional set size of a process tree (an app and all its
// descendants, read from /proc), the machine's available memory, and
// Bulwark's own Go heap against its memory limit.
//
// A Watcher samples one root process every Options.Interval and calls
// Options.OnExceed when the tree stays above Options.Limit for
// Options.Samples consecutive samples, outside a grace period after start.
// It does not restart anything itself; callers decide what to do in
// OnExceed (the composition root asks the supervisor for a graceful
// restart). Self keeps Bulwark's own memory bounded with the Go memory limit
// and reports pressure to admission control.
//
// Every file is read under a configurable proc root, so tests run on
// fixtures under testdata/proc.
package memwatch
