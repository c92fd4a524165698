// Package cli implements the bulwark command line: one file per subcommand,
// each with its own flag set. It turns arguments into calls on internal/app
// and the admin API, and writes only to the writers it is given.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
)

// errUsage marks an error whose message is usage text already printed.
var errUsage = errors.New("usage")

const usage = `bulwark: a TLS front door, reverse proxy and supervisor for a small server's web app

Usage:
  bulwark run [--config FILE] [--pid-file FILE] [-- APP COMMAND ...]
        serve (and supervise the app, if given)
  bulwark check [--config FILE] [-q] [-- APP COMMAND ...]
        validate; print the effective config and every problem
  bulwark status [--config FILE] [--admin ADDR] [--token T] [--json]
        one-shot view: memory, connections, in flight, restarts
  bulwark top [--config FILE] [--admin ADDR] [--token T] [--interval 1s]
        the same, live in the terminal
  bulwark reload [--config FILE] [--admin ADDR] [--token T] [--timeout 5m]
        re-read the config (same as SIGHUP); waits until it is applied
  bulwark restart-app [--config FILE] [--admin ADDR] [--token T] [--timeout 5m]
        graceful restart of the supervised app; waits until it is ready
  bulwark upgrade [--pid-file FILE] [--timeout 90s]
        hand the sockets to a new binary (same as SIGUSR2)
  bulwark version
        print the version, commit, Go version and platform (no flags)

Flags:
  --config FILE    the configuration; default $BULWARK_CONFIG, else
                   ./bulwark.toml when present, else none (built-in defaults)
  --pid-file FILE  the serving process's PID; default $BULWARK_PID_FILE, else
                   bulwark.pid in the state directory
  -q               check: print only problems, not the effective config
  --admin ADDR     the admin server; default [admin] listen of the config
  --token T        the admin token; default $BULWARK_ADMIN_TOKEN, else
                   [admin] token of the config, else the generated one
  --json           status: print the /status JSON document
  --interval D     top: refresh interval
  --timeout D      reload, restart-app, upgrade: how long to wait for the answer

Run 'bulwark COMMAND -h' for the details of one command.
`

// Main runs the bulwark command line with args (without the program name)
// and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "run":
		err = runRun(ctx, rest, stdout, stderr)
	case "check":
		err = runCheck(ctx, rest, stdout, stderr)
	case "status":
		err = runStatus(ctx, rest, stdout, stderr)
	case "top":
		err = runTop(ctx, rest, stdout, stderr)
	case "reload":
		err = runReload(ctx, rest, stdout, stderr)
	case "restart-app":
		err = runRestartApp(ctx, rest, stdout, stderr)
	case "upgrade":
		err = runUpgrade(ctx, rest, stdout, stderr)
	case "version", "--version", "-version":
		err = runVersion(ctx, rest, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "bulwark: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errReported):
		return 1
	default:
		fmt.Fprintf(stderr, "bulwark %s: %v\n", cmd, err)
		return 1
	}
}
