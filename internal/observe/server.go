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
	db       *dbProbe // nil without Options.Database
	csp      string

	adminReqs map[string]*metrics.Counter // by path label; read-only after New

	mu     sync.Mutex // protects ring, events, rps
	ring   *ring
	events []Event
	rps    float64

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
	var wg sync.WaitGroup
	wg.Go(func() { s.sampleLoop(ctx) })
	if s.db != nil {
		wg.Go(func() { s.db.run(ctx, s.opts.DBInterval) })
	}
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
	if s.db != nil {
		s.db.close()
	}
	return err
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
	s.sample(time.Now())
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
	if s.db != nil {
		d := s.db.status()
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

// authorized reports whether r carries the token, in constant time: both
// sides are hashed first, so neither the length nor a prefix leaks.
func (s *Server) authorized(r *http.Request) bool {
	if s.opts.Token == "" {
		return true
	}
	got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
	return subtle.ConstantTimeCompare(got[:], s.tokenSum[:]) == 1
}
