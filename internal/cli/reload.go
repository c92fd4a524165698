package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
)

const reloadUsage = `Usage: bulwark reload [--admin ADDR] [--token T]

Ask a running Bulwark to re-read its configuration (the same as SIGHUP).
The token is read from --token or $BULWARK_ADMIN_TOKEN.

Flags:
`

const restartAppUsage = `Usage: bulwark restart-app [--admin ADDR] [--token T]

Ask a running Bulwark to restart its app gracefully: requests arriving
meanwhile are held, not refused. The token is read from --token or
$BULWARK_ADMIN_TOKEN.

Flags:
`

// runReload implements "bulwark reload".
func runReload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runAction(ctx, "reload", reloadUsage, "/api/reload", args, stdout, stderr)
}

// runRestartApp implements "bulwark restart-app".
func runRestartApp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runAction(ctx, "restart-app", restartAppUsage, "/api/restart-app", args, stdout, stderr)
}

// runAction POSTs to an admin API path and prints the answer.
func runAction(ctx context.Context, name, usage, path string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var af adminFlags
	af.register(fs)
	if err := parseAdminCmdFlags(fs, usage, args, stderr); err != nil {
		return err
	}
	c := af.client()
	msg, err := c.action(ctx, path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bulwark at %s: %s\n", c.addr, msg)
	return nil
}
