// Package memwatch measures memory without forking anything: the resident
// and proportional set size of a process tree (an app and all its
// descendants, read from /proc), the machine's available memory, and
// Bulwark's own Go heap against its memory limit.
//
// A Watcher samples one root process every Options.Interval (1 s), and
// every Options.FastInterval (100 ms) while the tree is above 80 % of
// Options.Limit or growing fast towards it; the fast samples re-read only
// the known processes' RSS. It calls Options.OnExceed under two rules:
//
//   - hard, at the first sample: the tree is above Limit × 1.25, or the
//     box's available memory (the machine's, or its cgroup's, see Box) is
//     under a floor while the tree holds at least half its limit;
//   - graceful: the tree stayed above Limit for Options.Samples samples
//     spanning at least (Samples-1) × Interval, outside a grace period
//     after start.
//
// It does not restart anything itself; callers decide what to do in
// OnExceed (the composition root asks the supervisor for a restart: next
// to the old copy when the box has room for both, after stopping it
// otherwise and always for the hard rule). Self keeps Bulwark's own memory bounded with the Go memory limit
// and reports pressure to admission control.
//
// Every file is read under a configurable proc root, so tests run on
// fixtures under testdata/proc.
package memwatch
