package observe

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Defaults applied to zero Options fields.
const (
	// DefaultHistory is how many seconds of samples the dashboard sees: five
	// minutes shows a restart and its aftermath without a heavy poll.
	DefaultHistory = 300
	// DefaultDBInterval is how often the database is probed, as the guide's
	// "check database connections" advice; often enough to see a pool leak,
	// rare enough to be no load.
	DefaultDBInterval = 30 * time.Second
	// DefaultShutdownTimeout bounds the drain of admin requests on stop.
	DefaultShutdownTimeout = 5 * time.Second
	// MaxEvents is how many events are kept.
	MaxEvents = 100
)

// sampleInterval is the sampler's period; the dashboard polls at the same rate.
const sampleInterval = time.Second

// Options configure a Server.
type Options struct {
	// Listen is the admin address, such as "127.0.0.1:9090". If empty, the
	// admin server is off: Listen does nothing and Run returns nil at once.
	Listen string
	// Token, if not empty, is required on every path as
	// "Authorization: Bearer <token>". If empty, no authentication is done.
	Token string
	// LoopbackReads, when true, serves GET and HEAD requests from a
	// loopback peer without the token (the dashboard, /status, /metrics,
	// /api/history) while POST actions still need it. Bulwark sets it when
	// the token was generated rather than configured: a browser on the
	// same machine and a local scraper keep working, and another local
	// user still cannot reload or restart the app. Requests naming a DNS
	// host other than localhost are not let through (DNS rebinding).
	LoopbackReads bool
	// TokenFile, if not empty, is the file the token was generated in. A
	// 401 names it in a Bulwark-Token-File header, so that the CLI, run as
	// the same user or root, finds the token without being told where
	// Bulwark keeps its state (systemd's StateDirectory, a cPanel home).
	// The path is no secret; the file is mode 0600.
	TokenFile string
	// Metrics is the process's metrics set, served at /metrics together
	// with the process_* and go_* series. If nil, a private set is used.
	Metrics *metrics.Set
	// Snapshot reports the current state. Required.
	Snapshot func() Snapshot
	// OnReload is called by POST /api/reload. If nil, that answers 501. An
	// error answers 500, or the status of an *httperr.Error in it.
	OnReload func() error
	// OnRestartApp is called by POST /api/restart-app and returns once the
	// new app is ready, or with why it is not (an *httperr.Error in it sets
	// the status; 500 otherwise). If nil, that answers 409: no app is
	// supervised.
	OnRestartApp func() error
	// History is how many seconds of samples are kept for the dashboard.
	// If zero, DefaultHistory is used.
	History int
	// Version is reported in /status and bulwark_build_info. If empty,
	// "unknown" is used.
	Version string
	// Logger receives errors. If nil, nothing is logged.
	Logger *slog.Logger
	// Database, if not empty, is a "mysql://user:pass@host:port/db" or
	// "postgres://..." URL whose server is probed for connections in use.
	Database string
	// DBInterval is the probe period. If zero, DefaultDBInterval is used.
	DBInterval time.Duration
}

func (o Options) withDefaults() Options {
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.History <= 0 {
		o.History = DefaultHistory
	}
	if o.Version == "" {
		o.Version = "unknown"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DBInterval <= 0 {
		o.DBInterval = DefaultDBInterval
	}
	return o
}

// Server is the admin server. Create it with New, bind with Listen, serve
// with Run.
type Server struct {
	opts     Options
	tokenSum [sha256.Size]byte
	handler  http.Handler
	csp      string

	adminReqs map[string]*metrics.Counter // by path label; read-only after New

	mu     sync.Mutex // protects ring, events, rps, db
	ring   *ring
	events []Event
	rps    float64
	db     *dbProbe // nil without a database; SetDatabase replaces it

	dbChanged chan struct{} // cap 1: SetDatabase tells Run's probe loop

	ln net.Listener
}

// New checks o and builds a Server. It neither binds nor starts anything.
func New(o Options) (*Server, error) {
	if o.Snapshot == nil {
		return nil, errors.New("observe: Options.Snapshot is required")
	}
	o = o.withDefaults()
	s := &Server{
		opts:      o,
		tokenSum:  sha256.Sum256([]byte("Bearer " + o.Token)),
		ring:      newRing(o.History),
		csp:       dashboardPolicy(),
		adminReqs: make(map[string]*metrics.Counter, len(adminPaths)+1),
		dbChanged: make(chan struct{}, 1),
	}
	if o.Database != "" {
		p, err := newDBProbe(o.Database, o.Metrics, o.Logger)
		if err != nil {
			return nil, err
		}
		s.db = p
	}
	for _, p := range append(adminPaths, "other") {
		s.adminReqs[p] = o.Metrics.GetOrCreateCounter(fmt.Sprintf("bulwark_admin_requests_total{path=%q}", p))
	}
	o.Metrics.GetOrCreateGauge(fmt.Sprintf("bulwark_build_info{version=%q}", o.Version), nil).Set(1)
	s.handler = s.routes()
	return s, nil
}

// Handler returns the admin HTTP handler, authentication included; for
// tests and for embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Listen binds the admin address now, so that errors such as "address in
// use" surface before Run. It does nothing when Options.Listen is empty.
func (s *Server) Listen() error {
	if s.opts.Listen == "" || s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	s.ln = ln
	return nil
}

// UseListener makes Run serve on ln, a listener the caller opened (one
// inherited across a binary upgrade); Listen then does nothing.
func (s *Server) UseListener(ln net.Listener) { s.ln = ln }

// Addr reports the bound address after Listen, else Options.Listen.
func (s *Server) Addr() string {
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.opts.Listen
}

// Run serves the admin API, samples Options.Snapshot every second into the
// history and probes the database, until ctx is done; it then drains admin
// requests for up to DefaultShutdownTimeout and returns nil. It calls Listen
// if that has not been done. With Options.Listen empty it returns nil at
// once. All goroutines it starts have ended when it returns.
func (s *Server) Run(ctx context.Context) error {
	if s.opts.Listen == "" {
		return nil
	}
	if err := s.Listen(); err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelDebug),
	}
	// The first sample is taken before serving, so the first answer (a
	// `bulwark top` started with Bulwark) already has a history.
	s.sample(time.Now())
	var wg sync.WaitGroup
	wg.Go(func() { s.sampleLoop(ctx) })
	wg.Go(func() { s.dbLoop(ctx) })
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(s.ln) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serving admin: %w", err)
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultShutdownTimeout)
	defer cancel()
	if serr := srv.Shutdown(stopCtx); serr != nil {
		_ = srv.Close()
	}
	if err == nil {
		<-serveErr // http.ErrServerClosed
	}
	wg.Wait()
	return err
}

// SetDatabase makes rawURL the database probed from now on ("" stops
// probing), as a reload of [observe] database asks. A URL that does not
// parse is refused and the probe in place keeps running. It is safe for
// concurrent use.
func (s *Server) SetDatabase(rawURL string) error {
	var p *dbProbe
	if rawURL != "" {
		var err error
		if p, err = newDBProbe(rawURL, s.opts.Metrics, s.opts.Logger); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.db = p
	s.mu.Unlock()
	select {
	case s.dbChanged <- struct{}{}:
	default: // a change is pending already; the loop reads s.db afresh
	}
	return nil
}

// dbLoop runs the probe of s.db, restarting it on SetDatabase, until ctx
// is done; it closes every probe it ran. Each probe's own goroutine has
// ended when dbLoop moves on or returns.
func (s *Server) dbLoop(ctx context.Context) {
	var (
		cur  *dbProbe
		stop context.CancelFunc
		done chan struct{}
	)
	start := func() {
		s.mu.Lock()
		cur = s.db
		s.mu.Unlock()
		if cur == nil {
			return
		}
		var pctx context.Context
		pctx, stop = context.WithCancel(ctx)
		done = make(chan struct{})
		go func(p *dbProbe) { defer close(done); p.run(pctx, s.opts.DBInterval) }(cur)
	}
	end := func() {
		if cur == nil {
			return
		}
		stop()
		<-done
		cur.close()
		cur = nil
	}
	start()
	for {
		select {
		case <-ctx.Done():
			end()
			return
		case <-s.dbChanged:
			end()
			start()
		}
	}
}

// AddEvent records an event for the dashboard's markers and /status. It is
// safe for concurrent use; a zero At means now.
func (s *Server) AddEvent(e Event) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.events) == MaxEvents {
		copy(s.events, s.events[1:])
		s.events = s.events[:MaxEvents-1]
	}
	s.events = append(s.events, e)
}

// sampleLoop takes one sample a second until ctx is done.
func (s *Server) sampleLoop(ctx context.Context) {
	t := time.NewTicker(sampleInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.sample(now)
		}
	}
}

// sample stores one Snapshot in the ring and updates the request rate.
func (s *Server) sample(now time.Time) {
	snap := s.opts.Snapshot()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rps = s.ring.add(now, snap)
}

// status builds the /status document; with history, the ring too (only
// the samples after since, when it names one the ring holds).
func (s *Server) status(withHistory bool, since int64) Status {
	snap := s.opts.Snapshot()
	st := Status{
		Time:              time.Now(),
		Version:           s.opts.Version,
		Snapshot:          snap,
		LatencyP50Seconds: snap.LatencyP50.Seconds(),
		LatencyP99Seconds: snap.LatencyP99.Seconds(),
	}
	s.mu.Lock()
	db := s.db
	s.mu.Unlock()
	if db != nil {
		d := db.status()
		if snap.App != nil {
			d.AppProcesses = appWorkers(snap.App.Procs)
			d.AppBudget = int64(snap.DBPoolPerProcess) * int64(d.AppProcesses)
		}
		st.DB = &d
	}
	s.mu.Lock()
	st.RequestsPerSecond = s.rps
	st.Events = append([]Event{}, s.events...)
	if withHistory {
		st.History = s.ring.history(since)
	}
	s.mu.Unlock()
	return st
}

// appWorkers counts the app processes that hold a database pool: every
// process of the tree but Python's multiprocessing helpers
// (resource_tracker, semaphore_tracker), and, when the main process has
// workers (uvicorn --workers, gunicorn), not the main process, which only
// manages them.
func appWorkers(procs []ProcInfo) int {
	n := 0
	for _, p := range procs {
		if !strings.Contains(p.Cmdline, "resource_tracker") && !strings.Contains(p.Cmdline, "semaphore_tracker") {
			n++
		}
	}
	if n > 1 {
		n-- // the main process manages the workers
	}
	return n
}

// openRead reports whether r may go without the token under
// Options.LoopbackReads.
func (s *Server) openRead(r *http.Request) bool {
	if !s.opts.LoopbackReads || (r.Method != http.MethodGet && r.Method != http.MethodHead) || !localHost(r.Host) {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authorized reports whether r carries the token, in constant time: both
// sides are hashed first, so neither the length nor a prefix leaks.
func (s *Server) authorized(r *http.Request) bool {
	if s.opts.Token == "" {
		return true
	}
	got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
	return subtle.ConstantTimeCompare(got[:], s.tokenSum[:]) == 1
}
