// Package app is Bulwark's composition root: it turns a config.Config into
// each package's Options, builds the request chain, and runs the pieces
// under one errgroup. It is the only package that knows every other one;
// the packages it wires never import each other along the request path
// except in the order a request flows.
//
// The chain a request takes:
//
//	front (connection caps, TLS, HTTP/1.1 loop, HTTP/2) → accesslog →
//	cors.Decorate (CORS headers on the answers made before cors) →
//	route.Select (the request's [[route]], one snapshot) → limit.Rates
//	(rate_per_ip, the route's own or the global: 429 before the body is
//	read) → cors → static files → route (per-path body limit) →
//	spool.Responses → compress →
//	spool.Requests (body limit, request spool) → admit (slot, queue) →
//	supervise.Gate (hold while the app restarts) → proxy → app
//
// The response spool sits outside admit so that the app's slot is freed as
// soon as the app has answered, while a slow client is fed from the spool.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sync/errgroup"

	"bulwark/internal/accesslog"
	"bulwark/internal/acme"
	"bulwark/internal/admit"
	"bulwark/internal/config"
	"bulwark/internal/front"
	"bulwark/internal/limit"
	"bulwark/internal/memwatch"
	"bulwark/internal/proxy"
	"bulwark/internal/spool"
	"bulwark/internal/supervise"
	"bulwark/internal/tlsconf"
	"bulwark/internal/upgrade"
)

// DefaultStopGrace bounds the drain of requests in flight on SIGTERM.
const DefaultStopGrace = 30 * time.Second

// Options are the process-level settings that do not come from the config.
type Options struct {
	// Logger is the process logger; nil discards.
	Logger *slog.Logger
	// LogLevel, when set, is the level Logger logs at; a reload sets it
	// from log.level. Nil: a reload reports a changed log.level as needing
	// a restart.
	LogLevel *slog.LevelVar
	// AccessLog receives access-log lines when the config says "stderr" or
	// "stdout"; nil means os.Stderr.
	Stderr, Stdout io.Writer
	// StopGrace bounds the drain on shutdown; zero means the config's
	// listen.shutdown_timeout.
	StopGrace time.Duration
	// Version is reported by the admin server.
	Version string
	// Load re-reads the configuration for a reload (SIGHUP, the admin API).
	// Nil means reloads are refused.
	Load func() (*config.Config, error)
	// Upgrader, when set, opens the listeners (inheriting them from the old
	// process after a binary upgrade), is told when this process serves,
	// and closes Run's loop when a newer process took over. Nil listens
	// directly.
	Upgrader *upgrade.Upgrader
}

// App is one running Bulwark: listeners, the request chain, the supervised
// app and the loops that watch memory.
type App struct {
	cfg  *config.Config
	opts Options
	log  *slog.Logger
	set  *metrics.Set

	certs    *tlsconf.Store
	acme     *acme.Manager // nil without [acme]
	conns    *limit.Conns  // shared by the HTTPS and HTTP listeners
	rates    *limit.Rates
	proxy    *proxy.Proxy
	admit    *admit.Limiter
	spool    *spool.Spool
	sup      *supervise.Supervisor // nil without [app], or with a pool
	watch    *memwatch.Watcher     // nil without [app], or with a pool
	pool     *supervise.Pool       // the app as workers (see usesPool); nil otherwise
	watches  []*memwatch.Watcher   // one per worker of pool
	self     *memwatch.Self
	access   *accesslog.Logger
	accessW  io.Closer // the access-log file, when it is one
	front    *front.Server
	redirect *front.Server // nil when listen.http is off
	admin    *adminServer  // nil when admin.listen is off
	edge     edge          // CORS, static files, compression, routes (edge.go)

	started    time.Time
	mu         sync.Mutex  // guards reload
	cfgMu      sync.Mutex  // guards cfg against readers outside reload
	memRestart atomic.Bool // a memory restart of the app is running
}

// config returns the running config; goroutines other than Reload's read
// it through here, since a reload replaces it.
func (a *App) config() *config.Config {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	return a.cfg
}

// New builds every piece from cfg without binding a socket or starting a
// process. The error lists every problem found.
func New(cfg *config.Config, o Options) (*App, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.StopGrace <= 0 {
		o.StopGrace = cfg.Listen.ShutdownTimeout.D()
	}
	if o.StopGrace <= 0 {
		o.StopGrace = DefaultStopGrace
	}
	a := &App{cfg: cfg, opts: o, log: o.Logger, set: metrics.NewSet(), started: time.Now()}
	var errs []error
	add := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	var err error

	if cfg.Acme.Enabled() {
		a.acme, err = acme.New(a.acmeOptions(cfg))
		add("acme", err)
	}
	a.certs, err = tlsconf.New(a.tlsOptions(cfg))
	add("tls", err)

	a.self = memwatch.NewSelf(memwatch.SelfOptions{
		Limit:           cfg.Memory.LimitBytes(),
		ReleaseInterval: cfg.Memory.ReleaseInterval.D(),
		Metrics:         a.set,
		Logger:          a.log,
	})

	a.spool, err = spool.New(a.spoolOptions(cfg))
	add("spool", err)

	a.admit = admit.New(admit.Options{
		MaxConcurrency: cfg.Upstream.MaxConcurrency,
		Queue:          cfg.Upstream.Queue,
		QueueTimeout:   cfg.Upstream.QueueTimeout.D(),
		Pressure:       a.self.Pressure,
		Metrics:        a.set,
		Logger:         a.log,
	})

	if len(cfg.App.Command) > 0 && usesPool(cfg) {
		a.pool, err = a.newPool(cfg)
		add("app", err)
	} else if len(cfg.App.Command) > 0 {
		a.watch = memwatch.New(memwatch.Options{
			Interval: cfg.App.CheckInterval.D(),
			Limit:    int64(cfg.App.MaxMemory),
			// The app is only measured once it has started; a few samples
			// of grace cover the memory spike of its imports.
			Grace:    3 * cfg.App.CheckInterval.D(),
			OnExceed: a.onAppMemoryExceeded,
			Metrics:  a.set,
			Logger:   a.log,
		})
		a.sup, err = supervise.New(a.superviseOptions(cfg))
		add("app", err)
	}

	if a.opts.Upgrader != nil && (a.sup != nil || a.pool != nil) {
		a.takeHandover(a.opts.Upgrader)
	}

	a.proxy, err = proxy.New(a.proxyOptions(cfg))
	add("upstream", err)

	a.access, a.accessW, err = a.accessLogger(cfg)
	add("log.access", err)

	// Before the edge: the routes' own rate tables share its metrics, and
	// bulwark_rate_clients is the first table's, the global one.
	a.rates = limit.NewRates(a.rateOptions(cfg))
	add("edge", a.buildEdge(cfg))

	if len(errs) > 0 {
		a.closeBuilt()
		return nil, errors.Join(errs...)
	}

	a.conns = limit.NewConns(a.connsOptions(cfg))
	fo := a.frontOptions(cfg)
	fo.Handler = a.handler()
	a.front, err = front.New(fo)
	add("listen", err)
	if cfg.Listen.HTTP != "" {
		a.redirect, err = front.New(a.redirectOptions(cfg))
		add("listen.http", err)
	}
	if cfg.Admin.Listen != "" {
		a.admin, err = newAdminServer(a, cfg)
		add("admin", err)
	}
	if len(errs) > 0 {
		a.closeBuilt()
		return nil, errors.Join(errs...)
	}
	return a, nil
}

// stopOrphans stops what a Bulwark that was killed left of the same app
// (supervise.StopOrphans) before ours starts: they would hold the app's
// port, or its memory. Run calls it after an upgrade's old process has
// exited when the app has a fixed port, so what that one left is stopped
// too.
func (a *App) stopOrphans() {
	o := a.superviseOptions(a.cfg)
	found, err := supervise.StopOrphans("", supervise.Scope(o.Command, o.Dir), a.cfg.App.StopTimeout.D())
	if len(found) > 0 {
		names := make([]string, len(found))
		for i, o := range found {
			names[i] = o.String()
		}
		a.log.Warn("stopped app processes left by a Bulwark that is no longer running (killed, or crashed)",
			"bulwark_pid", found[0].Parent, "processes", strings.Join(names, ", "))
	}
	if err != nil {
		a.log.Error("stopping app processes left by an earlier Bulwark", "err", err)
	}
}

// Check builds everything Run would, short of binding sockets and starting
// the app, and reports every problem. Warnings go to the returned slice.
// Every problem is reported at once, each named by its config key.
func Check(cfg *config.Config) (warnings []string, err error) {
	errs := checkApp(cfg)
	warnings = append(keyModeWarnings(cfg), poolNote(cfg)...)
	a, err := New(cfg, Options{})
	if err != nil {
		return warnings, errors.Join(append(errs, keyedErrors(cfg, err)...)...)
	}
	defer a.closeBuilt()
	w, err := spool.CheckDir(a.spoolDir())
	if err != nil {
		errs = append(errs, err)
	}
	return append(warnings, w...), errors.Join(errs...)
}

func (a *App) closeBuilt() {
	if a.proxy != nil {
		a.proxy.Close()
	}
	if a.accessW != nil {
		a.accessW.Close()
	}
	if a.edge.static != nil {
		a.edge.static.Close()
	}
}

// handler builds the request chain.
func (a *App) handler() http.Handler {
	var h http.Handler = a.proxy
	if a.sup != nil {
		h = a.sup.Gate(h)
	}
	if a.pool != nil {
		h = a.pool.Gate(h)
	}
	h = a.admit.Middleware(h)
	h = a.spool.Requests(h)
	h = a.wrapCompress(h)
	h = a.spool.Responses(h)
	h = a.wrapEdge(h)
	// Outside the edge, so that static files and CORS preflights count
	// toward a client's rate too; the route's own rate, if it has one.
	h = a.wrapRoutes(h)
	// The CORS headers of an actual answer on the answers made in front of
	// the cors layer (the 429 of rate_per_ip), so a browser page can read
	// them instead of seeing a CORS error.
	h = a.edge.cors.Decorate(h)
	return a.access.Middleware(h)
}

// appPicksAddress reports whether the app's command has a {port} or
// {socket} placeholder, so that Bulwark chooses a fresh address for every
// instance.
func (a *App) appPicksAddress() bool {
	for _, arg := range a.config().App.Command {
		if strings.Contains(arg, "{port}") || strings.Contains(arg, "{socket}") {
			return true
		}
	}
	return false
}

// becomeReady tells the upgrader that this process serves. After an
// upgrade with an app on an address of its own, that waits until our app
// is ready, so the old process keeps serving until then and nothing is
// held; otherwise the old process is released at once.
func (a *App) becomeReady(ctx context.Context, upg *upgrade.Upgrader) error {
	if (a.sup != nil || a.pool != nil) && upg.HasParent() && a.appPicksAddress() {
		wctx, cancel := context.WithTimeout(ctx, a.config().App.StartTimeout.D())
		wait := a.sup.Wait
		if a.pool != nil {
			wait = a.pool.Wait
		}
		err := wait(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("upgrade: the new app did not become ready: %w", err)
		}
	}
	if err := upg.Ready(); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	return nil
}

// onAppMemoryExceeded restarts the app for memory: gracefully (next to the
// old copy when the box has room for both) under the graceful rule, old
// copy first under the hard one. One memory restart runs at a time; a hard
// report during a graceful one stops the old copy at once.
func (a *App) onAppMemoryExceeded(e memwatch.Exceed) {
	s := e.Sample
	if !a.memRestart.CompareAndSwap(false, true) {
		if e.Hard {
			a.sup.Urgent()
		}
		return
	}
	restart, how := a.sup.Restart, "gracefully"
	if e.Hard {
		restart, how = a.sup.RestartHard, "now, stopping it first"
	}
	a.log.Warn("app memory above its limit: restarting it "+how, "rule", e.Reason,
		"rss", s.RSS, "pss", s.PSS, "limit", int64(a.config().App.MaxMemory), "available", e.Available, "processes", len(s.Procs))
	go func() {
		defer a.memRestart.Store(false)
		if err := restart("memory"); err != nil {
			a.log.Error("memory restart of the app failed", "err", err)
		}
	}()
}

// Run binds the listeners, starts the app and serves until ctx ends; then it
// stops accepting, drains requests in flight (up to StopGrace), and stops
// the app. It returns nil after a clean shutdown.
func (a *App) Run(ctx context.Context) error {
	lns, err := a.listen(ctx)
	if err != nil {
		return err
	}
	a.log.Info("bulwark started", "https", lns.https.Addr().String(), "profile", a.cfg.Resolved,
		"upstream", a.cfg.Upstream.Address, "app", a.cfg.App.Command)
	if warnings, err := spool.CheckDir(a.spool.Dir()); err != nil {
		a.log.Error("spool directory unusable", "dir", a.spool.Dir(), "err", err)
	} else {
		for _, w := range warnings {
			a.log.Warn(w)
		}
	}

	// The app and the loops run under their own context so that they outlive
	// the drain of client requests.
	bgCtx, bgCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer bgCancel()
	bg, bgCtx := errgroup.WithContext(bgCtx)
	if err := a.startACME(bgCtx, lns); err != nil {
		lns.close()
		return err
	}
	bg.Go(func() error { return a.certs.Run(bgCtx) })
	bg.Go(func() error { return a.self.Run(bgCtx) })
	upg := a.opts.Upgrader
	if a.sup != nil {
		bg.Go(func() error {
			if upg != nil && !a.appPicksAddress() {
				// After a binary upgrade the old process's app still holds
				// the app's fixed port until the old process has drained:
				// start ours after it exits; the gate holds requests
				// meanwhile.
				if err := upg.WaitForParent(bgCtx); err != nil {
					return nil
				}
			}
			a.stopOrphans()
			return a.sup.Run(bgCtx)
		})
		bg.Go(func() error { return a.watch.Run(bgCtx) })
	}
	if a.pool != nil {
		bg.Go(func() error {
			if upg != nil && !a.appPicksAddress() {
				if err := upg.WaitForParent(bgCtx); err != nil {
					return nil
				}
			}
			a.stopOrphans()
			return a.pool.Run(bgCtx)
		})
		for _, w := range a.watches {
			bg.Go(func() error { return w.Run(bgCtx) })
		}
	}
	if a.admin != nil {
		bg.Go(func() error { return a.admin.run(bgCtx) })
	}

	serveErr := make(chan error, 4)
	go func() { serveErr <- a.front.Serve(lns.https) }()
	if a.redirect != nil {
		go func() { serveErr <- a.redirect.Serve(lns.http) }()
	}
	var exit <-chan struct{}
	if upg != nil {
		exit = upg.Exit()
		go func() {
			if err := a.becomeReady(ctx, upg); err != nil {
				serveErr <- err
			}
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case <-exit:
		a.log.Info("a new bulwark process took over the listeners")
	case <-bgCtx.Done(): // a loop failed
		runErr = errors.New("a background task stopped")
	case err := <-serveErr:
		runErr = err
	}
	a.log.Info("bulwark stopping: draining requests in flight", "grace", a.opts.StopGrace)
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.opts.StopGrace)
	defer cancel()
	if err := a.front.Shutdown(drainCtx); err != nil {
		a.log.Warn("drain deadline reached: closed the remaining connections", "err", err)
	}
	if a.redirect != nil {
		a.redirect.Shutdown(drainCtx)
	}
	bgCancel() // stops the app gracefully and the loops
	bgErr := bg.Wait()
	if upg != nil {
		upg.Stop()
	}
	a.closeBuilt()
	if runErr != nil && !errors.Is(runErr, http.ErrServerClosed) {
		return errors.Join(runErr, bgErr)
	}
	a.log.Info("bulwark stopped")
	return bgErr
}
