package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/VictoriaMetrics/metrics"

	"bulwark/internal/accesslog"
	"bulwark/internal/config"
	"bulwark/internal/front"
	"bulwark/internal/limit"
	"bulwark/internal/listen"
	"bulwark/internal/memwatch"
	"bulwark/internal/proxy"
	"bulwark/internal/spool"
	"bulwark/internal/static"
	"bulwark/internal/supervise"
	"bulwark/internal/tlsconf"
)

// This file is the one place where config keys become package Options.

func (a *App) tlsOptions(cfg *config.Config) tlsconf.Options {
	var pairs []tlsconf.Pair
	if cfg.TLS.Cert != "" {
		pairs = append(pairs, tlsconf.Pair{CertFile: cfg.TLS.Cert, KeyFile: cfg.TLS.Key})
	}
	for _, p := range cfg.TLS.Certificates {
		pairs = append(pairs, tlsconf.Pair{CertFile: p.Cert, KeyFile: p.Key})
	}
	minVersion, _ := tlsconf.ParseMinVersion(cfg.TLS.MinVersion) // validated by config
	return tlsconf.Options{
		Pairs:          pairs,
		DevCertDir:     cfg.TLS.CertDir,
		MinVersion:     minVersion,
		SessionTickets: cfg.TLS.SessionTickets,
		TicketKeyFile:  cfg.TLS.TicketKeyFile,
		Managed:        a.managed(),
		Logger:         a.log,
		Metrics:        a.set,
	}
}

// frontOptions are the front door's options from cfg; New adds the
// handler chain (Update keeps the one it has).
func (a *App) frontOptions(cfg *config.Config) front.Options {
	return front.Options{
		TLSConfig:         a.certs.TLSConfig(),
		ReadHeaderTimeout: cfg.Listen.ReadHeaderTimeout.D(),
		IdleTimeout:       cfg.Listen.KeepaliveTimeout.D(),
		MaxHeaderBytes:    int(cfg.Listen.MaxHeaderBytes),
		HSTS:              cfg.TLS.HSTS.D(),
		RequestContext:    withTiming,
		Conns:             a.conns,
		Logger:            a.log,
		Metrics:           a.set,
	}
}

// connsOptions are the connection caps and the descriptor reserve, shared
// by the HTTPS and HTTP listeners (not admin's, which they protect).
func (a *App) connsOptions(cfg *config.Config) limit.ConnsOptions {
	return limit.ConnsOptions{
		Max:       cfg.Listen.MaxConns,
		PerIP:     cfg.Listen.MaxConnsPerIP,
		Exempt:    cfg.Listen.TrustedPrefixes(),
		FDReserve: fdReserve(cfg),
		Metrics:   a.set,
	}
}

// fdReserve is the descriptors client connections leave free (limit
// makes it at least a tenth of RLIMIT_NOFILE, at most half): the app's
// connections, twice the pool for the ones closing while new ones open;
// the spool's temp files and the static files' slots, which their own
// budgets bound and would otherwise find taken by connections (EMFILE);
// and 64 for admin, listeners, logs, the supervisor's pipes and the
// certificate watcher.
func fdReserve(cfg *config.Config) int {
	n := 64 + 2*max(cfg.Upstream.MaxConcurrency, cfg.Upstream.Keepalive) + spool.DefaultMaxFiles()
	if len(cfg.Static) > 0 {
		n += static.DefaultMaxOpenFiles()
	}
	return n
}

// rateOptions are limits.rate_per_ip's. The table holds twice max_conns
// addresses (every address with a connection open, and as many that left
// recently), DefaultMaxClients when max_conns is off.
func (a *App) rateOptions(cfg *config.Config) limit.RateOptions {
	perSecond, burst := cfg.Limits.Rate()
	o := limit.RateOptions{
		PerSecond: perSecond,
		Burst:     burst,
		Trusted:   cfg.Listen.TrustedPrefixes(),
		Metrics:   a.set,
		Logger:    a.log,
	}
	if cfg.Listen.MaxConns > 0 {
		o.MaxClients = 2 * cfg.Listen.MaxConns
	}
	return o
}

// withTiming gives every request the proxy's Timing, which the access log
// reads back (accessLogger's Begin).
func withTiming(ctx context.Context) context.Context {
	ctx, _ = proxy.WithTiming(ctx)
	return ctx
}

func (a *App) redirectOptions(cfg *config.Config) front.Options {
	return front.Options{
		Handler:           a.acmeHTTP(front.RedirectHandler(cfg.Listen.HTTPS)),
		ReadHeaderTimeout: cfg.Listen.ReadHeaderTimeout.D(),
		IdleTimeout:       cfg.Listen.KeepaliveTimeout.D(),
		MaxHeaderBytes:    int(cfg.Listen.MaxHeaderBytes),
		Conns:             a.conns, // its connections count towards the caps
		Logger:            a.log,
		Metrics:           metrics.NewSet(), // its connections are not the front door's
	}
}

func (a *App) spoolDir() string {
	if a.cfg.Limits.SpoolDir != "" {
		return a.cfg.Limits.SpoolDir
	}
	return spool.DefaultDir()
}

func (a *App) spoolOptions(cfg *config.Config) spool.Options {
	return spool.Options{
		Dir:             cfg.Limits.SpoolDir,
		MemoryPerBody:   int64(cfg.Limits.BodyBuffer),
		MemoryBudget:    int64(cfg.Limits.SpoolMemory),
		DiskLimit:       int64(cfg.Limits.SpoolDisk),
		MaxBody:         bodyCeiling(cfg), // each route's own: the router (edge.go)
		BufferRequests:  cfg.Limits.BufferRequests,
		BufferResponses: cfg.Limits.BufferResponses,
		StreamPaths:     cfg.Limits.StreamPaths,
		SendTimeout:     cfg.Upstream.SendTimeout.D(),
		RulesFor:        spoolRules, // the request's [[route]] (edge.go)
		TrustedProxies:  cfg.Listen.TrustedPrefixes(),
		Logger:          a.log,
		Metrics:         a.set,
	}
}

func (a *App) proxyOptions(cfg *config.Config) proxy.Options {
	o := proxy.Options{
		Upstreams:      cfg.Upstream.Address,
		KeepAlive:      cfg.Upstream.Keepalive,
		ConnectTimeout: cfg.Upstream.ConnectTimeout.D(),
		SendTimeout:    cfg.Upstream.SendTimeout.D(),
		ReadTimeout:    cfg.Upstream.ReadTimeout.D(),
		TimeoutsFor:    proxyTimeouts, // the request's [[route]] (edge.go)
		TrustedProxies: cfg.Listen.TrustedPrefixes(),
		MaxBody:        bodyCeiling(cfg), // each route's own: the router (edge.go)
		Logger:         a.log,
		Metrics:        a.set,

		UnderscoresInHeaders: cfg.Listen.UnderscoresInHeaders,
	}
	switch {
	case cfg.Upstream.Keepalive == 0:
		o.KeepAlive = -1 // 0 in the config means no pooling
	case cfg.Upstream.Keepalive < cfg.Upstream.MaxConcurrency:
		// Up to max_concurrency requests are at the app at once; a smaller
		// idle pool closes connections after every burst only to dial them
		// again (measured: 7.6 % of CPU under load at 50 concurrent).
		o.KeepAlive = cfg.Upstream.MaxConcurrency
	}
	if a.sup != nil {
		o.AwaitReady = a.sup.Wait
	}
	if a.pool != nil {
		o.AwaitReady = a.pool.Wait
	}
	return o
}

func (a *App) superviseOptions(cfg *config.Config) supervise.Options {
	return supervise.Options{
		Command:      cfg.App.Command,
		Dir:          cfg.App.Dir,
		Env:          cfg.AppEnvOverrides(),
		Unset:        cfg.AppEnvRemoved(),
		DefaultEnv:   cfg.ProfileAppEnv(),
		Upstream:     cfg.Upstream.Address[0], // one address with [app] (config checks)
		Health:       cfg.App.Health,
		StartTimeout: cfg.App.StartTimeout.D(),
		StopTimeout:  cfg.App.StopTimeout.D(),
		RestartHold:  cfg.App.RestartHold.D(),
		MaxMemory:    int64(cfg.App.MaxMemory),
		ZeroDowntime: a.secondInstanceFits,
		OnAddress: func(addr string) {
			if err := a.proxy.SetUpstream(addr); err != nil {
				a.log.Error("switching the upstream address failed", "addr", addr, "err", err)
			}
		},
		OnStart: func(pid int) { a.watch.Watch(pid) },
		Logger:  a.log,
		Metrics: a.set,
	}
}

// secondInstanceFits reports whether a second app instance fits next to
// the running one now, for a zero-downtime restart: the box's available
// memory (the machine's, or its cgroup's) less what a fresh copy holds
// (the app's RSS after its start-up, else its current RSS up to
// max_memory) stays above the memory floor.
func (a *App) secondInstanceFits() bool { return a.copyFits(a.watch) }

// copyFits reports whether one more copy of the app that w watches fits
// in the box above its floor: what a fresh copy held (w's baseline), else
// what this one holds, at most max_memory.
func (a *App) copyFits(w *memwatch.Watcher) bool {
	box, err := memwatch.Box("", "")
	if err != nil {
		return false
	}
	need := w.Baseline()
	if need <= 0 {
		need = w.Last().RSS
		if limit := int64(a.config().App.MaxMemory); limit > 0 {
			need = min(need, limit)
		}
	}
	return box.MemAvailable-need >= memwatch.DefaultFloor(box.MemTotal)
}

// accessLogger opens the access log the config names.
func (a *App) accessLogger(cfg *config.Config) (*accesslog.Logger, io.Closer, error) {
	w, closer, format, err := a.openAccessLog(cfg)
	if err != nil {
		return nil, nil, err
	}
	return accesslog.New(accesslog.Options{
		Writer:  w,
		Format:  format,
		Metrics: a.set,
		Begin: func(r *http.Request) (*http.Request, accesslog.UpstreamTimer) {
			t := proxy.TimingOf(r.Context())
			if t == nil { // a request the front door did not make (tests)
				var ctx context.Context
				ctx, t = proxy.WithTiming(r.Context())
				r = r.WithContext(ctx)
			}
			return r, t
		},
	}), closer, nil
}

// openAccessLog opens where log.access says the lines go: a nil writer for
// "off", and a closer when it is a file.
func (a *App) openAccessLog(cfg *config.Config) (io.Writer, io.Closer, accesslog.Format, error) {
	format := accesslog.Text
	if strings.EqualFold(cfg.Log.AccessFormat, "json") {
		format = accesslog.JSON
	}
	switch cfg.Log.Access {
	case "off":
		return nil, nil, format, nil
	case "", "stderr":
		return a.opts.Stderr, nil, format, nil
	case "stdout":
		return a.opts.Stdout, nil, format, nil
	}
	f, err := os.OpenFile(cfg.Log.Access, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, format, fmt.Errorf("open access log: %w", err)
	}
	return f, f, format, nil
}

// reopenAccessLog points the access log where cfg says, opening a file
// afresh even when its name did not change, so that a reload after
// logrotate moved the file writes to a new one. On failure the old
// destination stays.
func (a *App) reopenAccessLog(cfg *config.Config) error {
	w, closer, format, err := a.openAccessLog(cfg)
	if err != nil {
		return err
	}
	a.access.SetOutput(w, format)
	if a.accessW != nil {
		a.accessW.Close()
	}
	a.accessW = closer
	return nil
}

// listeners are the sockets Run serves.
type listeners struct {
	https, http, admin net.Listener
}

func (a *App) listen(ctx context.Context) (*listeners, error) {
	open := func(addr string) (net.Listener, error) {
		if a.opts.Upgrader != nil {
			return a.opts.Upgrader.Listen(ctx, "tcp", addr, a.cfg.Listen.Backlog)
		}
		return listen.TCP(ctx, addr, a.cfg.Listen.Backlog)
	}
	var lns listeners
	var err error
	fail := func(what string, err error) (*listeners, error) {
		for _, ln := range []net.Listener{lns.https, lns.http, lns.admin} {
			if ln != nil {
				ln.Close()
			}
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if lns.https, err = open(a.cfg.Listen.HTTPS); err != nil {
		return fail("listen.https", err)
	}
	if a.cfg.Listen.HTTP != "" {
		if lns.http, err = open(a.cfg.Listen.HTTP); err != nil {
			return fail("listen.http", err)
		}
	}
	if a.admin != nil {
		if lns.admin, err = open(a.cfg.Admin.Listen); err != nil {
			return fail("admin.listen", err)
		}
		a.admin.srv.UseListener(lns.admin)
	}
	return &lns, nil
}
