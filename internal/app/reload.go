package app

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"bulwark/internal/config"
	"bulwark/internal/memwatch"
)

// requestsTotal reports the requests served since start.
func (a *App) requestsTotal() uint64 { return a.access.Requests() }

// reloadFromAdmin is POST /api/reload: the same as SIGHUP.
func (a *App) reloadFromAdmin() error {
	if a.opts.Load == nil {
		return errors.New("reload: this instance was started without a config loader")
	}
	cfg, err := a.opts.Load()
	if err != nil {
		return fmt.Errorf("reload: the new config is invalid; keeping the old one: %w", err)
	}
	return a.Reload(cfg)
}

// Reload applies a new, already validated config without closing a
// connection: limits, timeouts, upstream, certificates and memory settings
// take effect for new requests; the access log is reopened (after
// logrotate moved the file, lines go to a new one) and log.level applies.
// A changed [app] restarts the app through the supervisor's graceful path,
// and Reload returns once the new app is ready or has failed (an error the
// admin API answers 502, with the app's last stderr lines; with {port} or
// {socket} the old app keeps serving).
// Listener addresses cannot change without a restart or an upgrade; a
// change there is reported and otherwise ignored.
func (a *App) Reload(cfg *config.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.cfg
	var errs []error
	changed := needsUpgrade(old, cfg)
	if a.opts.LogLevel == nil && old.Log.Level != cfg.Log.Level {
		changed = append(changed, "log.level")
	}
	if len(changed) > 0 {
		errs = append(errs, fmt.Errorf("%s changed: applied by 'bulwark upgrade' (no connection is refused) or a restart, not by a reload",
			strings.Join(changed, ", ")))
	}
	if err := a.certs.Update(a.tlsOptions(cfg)); err != nil {
		errs = append(errs, fmt.Errorf("tls: %w", err))
		return errors.Join(errs...) // the old certificates keep serving; apply nothing else
	}
	a.admit.SetLimits(cfg.Upstream.MaxConcurrency, cfg.Upstream.Queue, cfg.Upstream.QueueTimeout.D())
	a.conns.Update(a.connsOptions(cfg))
	a.rates.Update(a.rateOptions(cfg))
	a.front.Update(a.frontOptions(cfg))
	if a.redirect != nil {
		a.redirect.Update(a.redirectOptions(cfg))
	}
	a.proxy.Update(a.proxyOptions(cfg))
	if err := a.spool.Update(a.spoolOptions(cfg)); err != nil {
		errs = append(errs, fmt.Errorf("limits: %w", err))
	}
	if err := a.updateEdge(cfg); err != nil {
		errs = append(errs, err)
	}
	if err := a.reopenAccessLog(cfg); err != nil {
		errs = append(errs, fmt.Errorf("log.access: %w; lines still go where they went", err))
	}
	if a.opts.LogLevel != nil {
		a.opts.LogLevel.Set(cfg.Log.SlogLevel())
	}
	a.self.Update(memwatch.SelfOptions{
		Limit:           cfg.Memory.LimitBytes(),
		ReleaseInterval: cfg.Memory.ReleaseInterval.D(),
		Metrics:         a.set,
		Logger:          a.log,
	})
	if !slices.Equal(cfg.Upstream.Address, old.Upstream.Address) && a.sup == nil && a.pool == nil {
		if err := a.proxy.SetUpstream(cfg.Upstream.Address...); err != nil {
			errs = append(errs, fmt.Errorf("upstream.address: %w", err))
		}
	}
	a.cfgMu.Lock()
	a.cfg = cfg
	a.cfgMu.Unlock()
	if a.pool != nil {
		for _, w := range a.watches {
			w.SetLimit(int64(cfg.App.MaxMemory))
		}
		// Waits for the roll: a reload that breaks the app must say so.
		if err := a.pool.UpdateWait(a.poolOptions(cfg, a.pool.Size())); err != nil {
			a.log.Error("reload: the new app did not start", "err", err)
			errs = append(errs, appFailed(fmt.Errorf("app: %w", err)))
		}
	}
	if a.sup != nil {
		a.watch.SetLimit(int64(cfg.App.MaxMemory))
		if appChanged(old, cfg) {
			// Waits for the new app: a reload that breaks it must say so.
			if err := a.sup.UpdateWait(a.superviseOptions(cfg)); err != nil {
				a.log.Error("reload: the new app did not start", "err", err)
				errs = append(errs, appFailed(fmt.Errorf("app: %w", err)))
			}
		}
	}
	if a.admin != nil && cfg.Observe != old.Observe {
		if err := a.admin.srv.SetDatabase(cfg.Observe.Database); err != nil {
			errs = append(errs, fmt.Errorf("observe.database: %w; the old probe keeps running", err))
		}
	}
	a.log.Info("config reloaded", "file", cfg.File, "profile", cfg.Resolved)
	return errors.Join(errs...)
}

// ReopenAccessLog opens the access-log file afresh under the name the
// running config gives it, as nginx does on SIGUSR1: after logrotate moved
// the file, lines go to a new one. Unlike a reload it does not read the
// config file, so a half-edited config does not stand in its way.
func (a *App) ReopenAccessLog() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.reopenAccessLog(a.cfg); err != nil {
		return err
	}
	a.log.Info("access log reopened", "access", a.cfg.Log.Access)
	return nil
}

// needsUpgrade lists the keys whose change a reload does not apply: they
// shape listeners, the admin server, the process log's format and the
// spool, which are built once per process. (An open HTTP/2 connection keeps the stream
// limit it announced; everything else in front applies at once.)
func needsUpgrade(a, b *config.Config) []string {
	var changed []string
	check := func(key string, differ bool) {
		if differ {
			changed = append(changed, key)
		}
	}
	la, lb := a.Listen, b.Listen
	check("listen.https", la.HTTPS != lb.HTTPS)
	check("listen.http", la.HTTP != lb.HTTP)
	check("listen.backlog", la.Backlog != lb.Backlog)
	check("admin", a.Admin != b.Admin)
	check("log.format", a.Log.Format != b.Log.Format)
	check("limits.spool_dir", a.Limits.SpoolDir != b.Limits.SpoolDir)
	check("acme", !reflect.DeepEqual(a.Acme, b.Acme))
	check("app.workers", a.App.Workers != b.App.Workers || usesPool(a) != usesPool(b))
	return changed
}

func appChanged(a, b *config.Config) bool {
	x, y := a.App, b.App
	if !slices.Equal(x.Command, y.Command) || x.Dir != y.Dir || x.Health != y.Health || len(x.Env) != len(y.Env) ||
		!slices.Equal(a.Upstream.Address, b.Upstream.Address) {
		return true
	}
	for k, v := range x.Env {
		if y.Env[k] != v {
			return true
		}
	}
	return false
}
