package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sync/errgroup"
)

// Recycle reasons of a pool's worker, label values of
// bulwark_app_recycles_total next to ReasonMemory, ReasonManual and
// ReasonReload.
const (
	ReasonMaxRequests    = "max_requests"
	ReasonMaxLifetime    = "max_lifetime"
	ReasonRequestTimeout = "request_timeout"
)

// WorkerEnv is the environment variable that tells a worker its index.
const WorkerEnv = "BULWARK_WORKER"

// lifetimeCheck is how often the pool looks for workers past max_lifetime.
const lifetimeCheck = time.Second

// PoolOptions configures a Pool.
type PoolOptions struct {
	// App is the command and its settings, as for one Supervisor. Its
	// OnAddress, OnStart and ZeroDowntime are not used: see the fields
	// below.
	App Options
	// Workers is the number of workers; less than 1 means 1. More than one
	// needs a placeholder in App.Command.
	Workers int
	// MaxRequests recycles a worker after this many requests plus a random
	// share of MaxRequestsJitter, drawn for every new instance; 0 = never.
	MaxRequests, MaxRequestsJitter int
	// MaxLifetime recycles a worker this long after it started, plus up to
	// a tenth more at random so that workers started together do not all
	// come due together; 0 = never.
	MaxLifetime time.Duration
	// RequestTimeout bounds the wait for the head of a worker's answer:
	// past it the client gets 504 and the worker is replaced. 0 = none.
	RequestTimeout time.Duration
	// OnAddresses, if not nil, is called with the addresses of the workers
	// that take requests whenever that list changes (never with an empty
	// list), for the proxy's failover and retries.
	OnAddresses func(addrs []string)
	// OnWorkerStart, if not nil, is called with a worker's index and the
	// PID of each of its new processes (for its memory watcher).
	OnWorkerStart func(worker, pid int)
	// WorkerFits, if not nil, reports whether a second copy of the worker
	// fits in memory now: then it is recycled next to its replacement,
	// else in place (its share of the requests goes to the others).
	WorkerFits func(worker int) bool
	// Route returns r bound for the worker at addr; required.
	Route func(r *http.Request, addr string) *http.Request
}

// Pool runs the app as several supervised workers, each its own process
// group on its own address, and spreads the requests among those ready:
// the one with the fewest requests in flight, in turn among equals. It
// recycles one worker at a time. Its methods are safe for concurrent use.
type Pool struct {
	log      *slog.Logger
	workers  []*worker
	rr       atomic.Uint64
	roll     sync.Mutex // one recycle or roll at a time
	hold     atomic.Int64
	held     *metrics.Counter
	holdH    *metrics.PrometheusHistogram
	recycles map[string]*metrics.Counter
	running  atomic.Bool
	// opts is read on every request: a pointer swapped whole on reload,
	// so the request path takes no lock for it.
	opts atomic.Pointer[PoolOptions]

	mu        sync.Mutex
	changed   chan struct{} // guarded by mu; closed and replaced on any change
	published []string      // guarded by mu; the last list given to OnAddresses
	// readySince is when the pool last went from no worker ready to one;
	// zero while none is. Guarded by mu.
	readySince time.Time
}

// worker is one slot of the pool.
type worker struct {
	index int
	sup   *Supervisor
	reqs  *metrics.Counter

	pid      atomic.Int64
	started  atomic.Int64 // Unix nanoseconds the current process started
	served   atomic.Int64 // requests sent to the current process
	limit    atomic.Int64 // its max_requests with jitter; 0 = none
	lifetime atomic.Int64 // its max_lifetime with jitter; 0 = none
	busy     atomic.Bool  // a recycle of this worker is queued or running

	mu         sync.Mutex
	stuckAddr  string    // guarded by mu; an address that timed out a request
	lastReason string    // guarded by mu
	lastAt     time.Time // guarded by mu
}

// NewPool checks o and returns a Pool; Run starts the workers.
func NewPool(o PoolOptions) (*Pool, error) {
	if o.Workers < 1 {
		o.Workers = 1
	}
	if o.Route == nil {
		return nil, errors.New("pool: Route is required")
	}
	if o.Workers > 1 && o.App.placeholder() == "" {
		return nil, errors.New(`several workers need an address each: write "--port {port}" or "--uds {socket}" in the app command`)
	}
	app := o.App.withDefaults()
	o.App = app
	p := &Pool{
		log:      app.Logger,
		held:     app.Metrics.GetOrCreateCounter("bulwark_gate_held_total"),
		holdH:    app.Metrics.GetOrCreatePrometheusHistogram("bulwark_gate_hold_seconds"),
		recycles: map[string]*metrics.Counter{},
		changed:  make(chan struct{}),
	}
	p.opts.Store(&o)
	p.hold.Store(int64(app.RestartHold))
	for _, r := range []string{ReasonMemory, ReasonMaxRequests, ReasonMaxLifetime, ReasonRequestTimeout, ReasonManual, ReasonReload} {
		p.recycles[r] = app.Metrics.GetOrCreateCounter(`bulwark_app_recycles_total{reason="` + r + `"}`)
	}
	for i := range o.Workers {
		wk := &worker{index: i, reqs: app.Metrics.GetOrCreateCounter(metricName("bulwark_app_worker_requests_total", strconv.Itoa(i), ""))}
		sup, err := New(p.workerOptions(wk, app))
		if err != nil {
			return nil, fmt.Errorf("worker %d: %w", i, err)
		}
		sup.gate.onChange = p.refresh
		wk.sup = sup
		p.workers = append(p.workers, wk)
		// By index, never by PID: a recycle must not mint new series.
		app.Metrics.GetOrCreateGauge(metricName("bulwark_app_worker_in_flight", strconv.Itoa(i), ""),
			func() float64 { return float64(wk.sup.InFlight()) })
		app.Metrics.GetOrCreateGauge(metricName("bulwark_app_worker_served", strconv.Itoa(i), ""),
			func() float64 { return float64(wk.served.Load()) })
	}
	app.Metrics.GetOrCreateGauge("bulwark_app_workers_ready", func() float64 { return float64(p.Ready()) })
	return p, nil
}

// workerOptions are the options of worker wk's supervisor: the app's, with
// its index in the environment, its logger and metrics labelled, and the
// pool's hooks.
func (p *Pool) workerOptions(wk *worker, app Options) Options {
	o := app
	o.Env = maps.Clone(app.Env)
	if o.Env == nil {
		o.Env = map[string]string{}
	}
	o.Env[WorkerEnv] = strconv.Itoa(wk.index)
	o.worker = strconv.Itoa(wk.index)
	o.Logger = app.Logger.With("worker", wk.index)
	o.OnAddress = func(string) { p.refresh() }
	o.OnStart = func(pid int) { p.started(wk, pid) }
	o.ZeroDowntime = func() bool {
		fits := p.opts.Load().WorkerFits
		return fits != nil && fits(wk.index)
	}
	return o
}

// started resets wk's counts for its new process pid and draws the
// process's own limits.
func (p *Pool) started(wk *worker, pid int) {
	o := p.opts.Load()
	wk.pid.Store(int64(pid))
	wk.started.Store(time.Now().UnixNano())
	wk.served.Store(0)
	var limit int64
	if o.MaxRequests > 0 {
		limit = int64(o.MaxRequests)
		if o.MaxRequestsJitter > 0 {
			limit += rand.Int64N(int64(o.MaxRequestsJitter) + 1)
		}
	}
	wk.limit.Store(limit)
	var life time.Duration
	if o.MaxLifetime > 0 {
		life = o.MaxLifetime + rand.N(o.MaxLifetime/10+1)
	}
	wk.lifetime.Store(int64(life))
	if o.App.placeholder() == "" {
		// A fixed address is the same for the new process: it is not
		// routed to before it is ready anyway.
		wk.mu.Lock()
		wk.stuckAddr = ""
		wk.mu.Unlock()
	}
	if o.OnWorkerStart != nil {
		o.OnWorkerStart(wk.index, pid)
	}
}

// Run starts every worker and keeps them running until ctx ends, as
// Supervisor.Run does for one; it also recycles workers past their
// max_lifetime, one at a time. It returns an error only when a worker's
// first start fails outright.
func (p *Pool) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("pool Run called twice")
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, wk := range p.workers {
		g.Go(func() error { return wk.sup.Run(gctx) })
	}
	g.Go(func() error {
		t := time.NewTicker(lifetimeCheck)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				p.checkLifetimes()
			}
		}
	})
	err := g.Wait()
	p.refresh()
	return err
}

// checkLifetimes recycles the first worker past its lifetime; the others
// come in later passes, one at a time.
func (p *Pool) checkLifetimes() {
	now := time.Now().UnixNano()
	for _, wk := range p.workers {
		life, started := wk.lifetime.Load(), wk.started.Load()
		if life > 0 && started > 0 && now-started >= life && !wk.busy.Load() {
			p.recycleAsync(wk, ReasonMaxLifetime)
			return
		}
	}
}

// WorkerStatus is one worker of Pool.Status.
type WorkerStatus struct {
	// Index is the worker's number, its BULWARK_WORKER.
	Index int
	// Status is its supervisor's, as for one app.
	Status
	// Served counts the requests sent to its current process.
	Served int64
	// InFlight counts its requests in flight.
	InFlight int
	// Started is when its current process started; zero before.
	Started time.Time
	// LastRecycle is the reason of its last recycle, "" before any, and
	// LastRecycleAt when it was.
	LastRecycle   string
	LastRecycleAt time.Time
}

// Status returns the pool as one app (ready while any worker is, with the
// restarts of all of them) and one row per worker.
func (p *Pool) Status() (Status, []WorkerStatus) {
	rows := make([]WorkerStatus, len(p.workers))
	sum := Status{State: StateStopped, Restarts: map[string]int{}}
	ready := 0
	for i, wk := range p.workers {
		st := wk.sup.Status()
		row := WorkerStatus{Index: i, Status: st, Served: wk.served.Load(), InFlight: wk.sup.InFlight()}
		if ns := wk.started.Load(); ns > 0 {
			row.Started = time.Unix(0, ns)
		}
		wk.mu.Lock()
		row.LastRecycle, row.LastRecycleAt = wk.lastReason, wk.lastAt
		wk.mu.Unlock()
		rows[i] = row
		for r, n := range st.Restarts {
			sum.Restarts[r] += n
		}
		if st.State == StateReady {
			ready++
		}
		if i == 0 || st.State == StateReady && sum.State != StateReady {
			sum.State, sum.Since, sum.PID, sum.Address = st.State, st.Since, st.PID, st.Address
			sum.Failure, sum.Stderr, sum.LastExit = st.Failure, st.Stderr, st.LastExit
		}
	}
	p.mu.Lock()
	since := p.readySince
	p.mu.Unlock()
	if sum.State == StateReady && !since.IsZero() {
		// Ready since the pool last had no worker ready: one worker's
		// recycle is no break in service.
		sum.Since = since
	}
	return sum, rows
}
