package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"bulwark/internal/app"
	"bulwark/internal/config"
)

const runUsage = `Usage: bulwark run [--config FILE] [-- APP COMMAND ...]

Serves HTTPS (and the plain-HTTP redirect, the admin server) and, when an app
command is given here or in [app] command, runs the app as a supervised child.
With no config file: HTTPS on 127.0.0.1:8443 with a self-signed certificate for
localhost, upstream 127.0.0.1:8002, admin on 127.0.0.1:9090.

Signals: SIGTERM/SIGINT drain and stop; SIGHUP reloads the configuration.
`

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, runUsage); fs.PrintDefaults() }
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	appCmd := fs.Args()
	cfg, err := loadConfig(*path, appCmd)
	if err != nil {
		printConfigErrors(stderr, err)
		return errReported
	}
	log := newLogger(cfg, stderr)
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	log.Info("configuration loaded", "file", cfg.File, "profile", cfg.Resolved, "why", cfg.ProfileReason)
	load := func() (*config.Config, error) { return loadConfig(*path, appCmd) }
	a, err := app.New(cfg, app.Options{Logger: log, Stderr: stderr, Stdout: stdout, Version: Version, Load: load})
	if err != nil {
		return err
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				next, err := load()
				if err != nil {
					log.Error("reload refused: the configuration has problems; keeping the old one", "err", err)
					continue
				}
				if err := a.Reload(next); err != nil {
					log.Warn("reload applied with problems", "err", err)
				}
			}
		}
	}()
	return a.Run(ctx)
}
