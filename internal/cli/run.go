package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"bulwark/internal/app"
	"bulwark/internal/config"
	"bulwark/internal/upgrade"
)

const runUsage = `Usage: bulwark run [--config FILE] [--pid-file FILE] [-- APP COMMAND ...]

Serves HTTPS (and the plain-HTTP redirect, the admin server) and, when an app
command is given here or in [app] command, runs the app as a supervised child.
With no config file: HTTPS on 127.0.0.1:8443 with a self-signed certificate for
localhost, upstream 127.0.0.1:8002, admin on 127.0.0.1:9090. The file is
--config, else $BULWARK_CONFIG, else ./bulwark.toml when present; the first
log line names it.

Signals: SIGTERM/SIGINT drain and stop; SIGHUP reloads the configuration
(and reopens the access log); SIGUSR1 only reopens the access log, for
logrotate; SIGUSR2 starts the binary again and hands it the listening sockets
(upgrade).
`

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, runUsage); fs.PrintDefaults() }
	path := configFlag(fs)
	pidFile := pidFileFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	appCmd := fs.Args()
	// Before anything is started: the app must not get what we inherited.
	fdErr := markInheritedCloseOnExec("/proc")
	*path = findConfig(*path)
	cfg, err := loadConfig(*path, appCmd)
	if err != nil {
		printConfigErrors(stderr, err)
		return errReported
	}
	log, level := newLogger(cfg, stderr)
	file := cfg.File
	if file == "" {
		file = "none (defaults; no --config, $BULWARK_CONFIG or ./" + defaultConfigFile + ")"
	}
	log.Info("configuration loaded", "file", file, "profile", cfg.Resolved, "why", cfg.ProfileReason)
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	if fdErr != nil {
		log.Warn("descriptors inherited by bulwark may reach the app", "err", fdErr)
	}
	fallbackToken := memoryToken()
	tokenFile, err := useGeneratedToken(cfg, fallbackToken)
	switch {
	case err != nil:
		log.Warn("admin.token is not set and the generated one cannot be stored: the admin API actions "+
			"(reload, restart-app) are locked until admin.token is set; SIGHUP still reloads", "err", err)
	case tokenFile != "":
		log.Info("admin API actions need the token generated in "+tokenFile+
			" (bulwark reload and restart-app read it; reads from loopback stay open)", "admin", cfg.Admin.Listen)
	}
	load := func() (*config.Config, error) {
		next, err := loadConfig(*path, appCmd)
		if err != nil {
			return next, err
		}
		_, _ = useGeneratedToken(next, fallbackToken) // the same token as at start, or its failure, again
		return next, nil
	}
	if *pidFile != "" {
		if err := os.MkdirAll(filepath.Dir(*pidFile), 0o700); err != nil {
			return fmt.Errorf("pid file directory: %w", err)
		}
	}
	upg, err := upgrade.New(upgrade.Options{PIDFile: *pidFile, Logger: log})
	if err != nil {
		return err
	}
	defer upg.Stop()
	a, err := app.New(cfg, app.Options{Logger: log, LogLevel: level, Stderr: stderr, Stdout: stdout, Version: Version, Load: load, Upgrader: upg})
	if err != nil {
		return err
	}

	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	defer signal.Stop(usr2)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-upg.Exit():
				return
			case <-usr2:
				log.Info("upgrade requested: starting the new binary")
				if err := upg.Upgrade(); err != nil {
					log.Error("upgrade failed; this process keeps serving", "err", err)
				}
			}
		}
	}()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-hup:
				if sig == syscall.SIGUSR1 {
					if err := a.ReopenAccessLog(); err != nil {
						log.Error("access log not reopened; lines still go where they went", "err", err)
					}
					continue
				}
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
