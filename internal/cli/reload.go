package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

// adminFindText says how the admin commands find the server; every one of
// them prints it in its usage.
const adminFindText = `The address and token come from --admin and --token, else
$BULWARK_ADMIN_TOKEN, else [admin] listen and token of the configuration
(--config, $BULWARK_CONFIG, ./bulwark.toml), else the token Bulwark generated
in its state directory (readable by the same user and root).`

const reloadUsage = `Usage: bulwark reload [--config FILE] [--admin ADDR] [--token T] [--timeout 5m]

Ask a running Bulwark to re-read its configuration (the same as SIGHUP) and
wait until it is applied; when the app's command changed, that is once the
new app is ready. A refused or failed reload exits 1 and prints why.
` + adminFindText + `

Flags:
`

const restartAppUsage = `Usage: bulwark restart-app [--config FILE] [--admin ADDR] [--token T] [--timeout 5m]

Ask a running Bulwark to restart its app gracefully, requests arriving
meanwhile held, not refused, and wait until the new app is ready. A failed
restart exits 1 and prints why, with the app's last lines of stderr.
` + adminFindText + `

Flags:
`

// defaultActionTimeout bounds the wait for a reload or an app restart: the
// server answers once the new app is ready, which may take the app's
// start_timeout (60 s by default) and more when it is set higher.
const defaultActionTimeout = 5 * time.Minute

// runReload implements "bulwark reload".
func runReload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runAction(ctx, "reload", reloadUsage, "/api/reload", args, stdout, stderr)
}

// runRestartApp implements "bulwark restart-app".
func runRestartApp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runAction(ctx, "restart-app", restartAppUsage, "/api/restart-app", args, stdout, stderr)
}

// runAction POSTs to an admin API path, waits for the answer (Ctrl-C gives
// up waiting; the server carries on) and prints it. A non-2xx answer is an
// error that carries the body.
func runAction(ctx context.Context, name, usage, path string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var af adminFlags
	af.register(fs)
	timeout := fs.Duration("timeout", defaultActionTimeout, "how long to wait for the answer (the new app's start included)")
	if err := parseAdminCmdFlags(fs, usage, args, stderr); err != nil {
		return err
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	c.hc.Timeout = 0 // the context below bounds the wait
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	msg, err := c.action(ctx, path)
	if err != nil {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return fmt.Errorf("no answer from %s within %s (--timeout); the %s may still be in progress: see 'bulwark status' and the log", c.addr, *timeout, name)
		case ctx.Err() != nil:
			return fmt.Errorf("interrupted before %s answered; the %s may still be in progress: see 'bulwark status' and the log", c.addr, name)
		}
		return err
	}
	fmt.Fprintf(stdout, "bulwark at %s: %s\n", c.addr, msg)
	return nil
}
