// Package upgrade replaces the running Bulwark binary without closing its
// listening sockets: SIGUSR2 (or `bulwark upgrade`) starts the new binary,
// hands it the listeners, and the old process stops accepting, drains and
// exits once the new one says it serves. It wraps
// github.com/cloudflare/tableflip and adds the listen(2) backlog, an atomic
// PID file written on readiness, and Trigger for the command line.
//
// # Process model
//
// At any time there are one or two Bulwark processes, and at most one of
// them is not ready yet:
//
//  1. The running process (P1) calls Upgrade. Upgrade starts the binary
//     again, same arguments, same environment, same working directory and
//     standard streams, with the listening sockets Listen opened passed as
//     inherited file descriptors. P1 keeps accepting meanwhile.
//  2. The new process (P2) builds everything from the configuration as a
//     first start would, calls Listen for the same (network, address) pairs
//     and gets P1's sockets back (a pair it does not ask for is closed when
//     it becomes ready; a pair P1 did not have is bound fresh). It calls
//     Ready once it serves: Ready writes the PID file, then tells P1.
//  3. Upgrade returns nil in P1 and Exit's channel closes: P1 stops accepting
//     (closes its copies of the listeners; the sockets stay open in P2, so
//     connections waiting in the accept queue are not lost), drains the
//     requests in flight, and exits. P2 accepts every new connection.
//
// If P2 exits, fails to become ready within Options.UpgradeTimeout (it is
// then killed), or P1 is stopped meanwhile, Upgrade returns an error and P1
// keeps serving as if nothing happened. P2's stderr passes through a pipe
// P1 reads until P2 is ready (P2 puts the real stderr back in Ready), so
// the error carries P2's last stderr lines (a config error, say), and P1
// records it next to the PID file, where Trigger reads it at once. Only one upgrade runs at a time, and
// P2 refuses to upgrade again until P1 has exited (WaitForParent).
//
// The binary started is the path the process was started by (os.Args[0]),
// made absolute when New runs, so that a binary replaced at the same path,
// or a symlink pointed at a new release, is what the upgrade runs. When that
// path cannot be resolved, os.Executable is used instead.
//
// tableflip allows one upgrader per process: call New once, in the command
// that runs the server, and keep it across configuration reloads.
//
// # The supervised app
//
// This package knows nothing about the app and no app state crosses the
// upgrade. Bulwark's choice is that P2 starts its own app instance, as a first
// start does, and P1 stops its app after it has drained its requests, as a
// SIGTERM would. For an app whose address Bulwark chooses ("{port}" or
// "{socket}" in the command) the two instances never collide. For an app on
// a fixed port, the port is the conflict: the caller either makes P2 wait for
// P1 to exit (WaitForParent) before it starts the app, holding requests
// meanwhile in the supervisor's gate, or uses a freshly chosen address.
//
// # systemd
//
// The main PID changes with every upgrade. With PIDFile= pointing at
// Options.PIDFile, systemd re-reads the file when the main process exits and
// follows P2, which wrote it before P1 learned it was ready. See
// contrib/bulwark.service.
package upgrade
