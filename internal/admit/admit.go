// Package admit limits how many requests are in flight to the app at once
// and lets a bounded number more wait, first come first served, up to a
// deadline. It counts requests, not connections (an idle keep-alive client
// holds no slot, unlike uvicorn's --limit-concurrency, uvicorn #1811), and
// sheds new requests while the process is under memory pressure. It answers
// nothing itself beyond the 503s of its Middleware: callers decide where in
// the chain a slot is taken.
package admit

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"bulwark/internal/httperr"

	"github.com/VictoriaMetrics/metrics"
)

// Defaults applied by New when the corresponding Options field is zero.
const (
	// DefaultMaxConcurrency is the medium profile's max_concurrency.
	DefaultMaxConcurrency = 50
	// DefaultQueueTimeout is how long a request may wait for a slot.
	DefaultQueueTimeout = 30 * time.Second
	// DefaultRetryAfter is the Retry-After sent with a 503.
	DefaultRetryAfter = 5 * time.Second
)

// Reasons carried by the *httperr.Error values Acquire returns; they are also
// the reason label of bulwark_admit_rejected_total.
const (
	ReasonQueueFull    = "queue_full"
	ReasonQueueTimeout = "queue_timeout"
	ReasonMemory       = "memory"
)

// queueWaitBuckets reach past DefaultQueueTimeout so a full wait is visible.
var queueWaitBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Options configures a Limiter.
type Options struct {
	// MaxConcurrency is the number of requests allowed in flight at once.
	// Zero or negative means DefaultMaxConcurrency.
	MaxConcurrency int
	// Queue is the number of requests allowed to wait for a slot. Zero
	// means none wait: a request that finds every slot taken gets a 503 at
	// once. Negative is treated as zero.
	Queue int
	// QueueTimeout is how long a request waits for a slot before a 503.
	// Zero or negative means DefaultQueueTimeout.
	QueueTimeout time.Duration
	// RetryAfter is sent as Retry-After with every 503. Zero or negative
	// means DefaultRetryAfter.
	RetryAfter time.Duration
	// Pressure, when set, reports memory pressure; while it returns true,
	// new requests are shed with a 503 (reason "memory") before they queue.
	// Nil means never under pressure. It is called once per request, so it
	// must be cheap.
	Pressure func() bool
	// Metrics receives the limiter's series. Nil means a private set.
	Metrics *metrics.Set
	// Logger receives rejections at debug level. Nil means slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	o.MaxConcurrency, o.Queue, o.QueueTimeout = limits(o.MaxConcurrency, o.Queue, o.QueueTimeout)
	if o.RetryAfter <= 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// limits applies the defaults of the three fields SetLimits can change.
func limits(maxConcurrency, queue int, queueTimeout time.Duration) (int, int, time.Duration) {
	if maxConcurrency <= 0 {
		maxConcurrency = DefaultMaxConcurrency
	}
	if queue < 0 {
		queue = 0
	}
	if queueTimeout <= 0 {
		queueTimeout = DefaultQueueTimeout
	}
	return maxConcurrency, queue, queueTimeout
}

// Stats is a snapshot of a Limiter.
type Stats struct {
	InFlight       int // requests holding a slot
	Queued         int // requests waiting for one
	MaxConcurrency int // current slot count
	Queue          int // current queue bound
}

// Limiter hands out concurrency slots. Its methods are safe for concurrent
// use. Create it with New.
type Limiter struct {
	retryAfter time.Duration
	pressure   func() bool
	log        *slog.Logger

	inflightG  *metrics.Gauge
	queueG     *metrics.Gauge
	waitH      *metrics.PrometheusHistogram
	rejFull    *metrics.Counter
	rejTimeout *metrics.Counter
	rejMemory  *metrics.Counter
	shed       *metrics.Counter

	pool sync.Pool // of *waiter

	mu       sync.Mutex
	max      int           // guarded by mu
	queueCap int           // guarded by mu
	timeout  time.Duration // guarded by mu
	inflight int           // guarded by mu
	queued   int           // guarded by mu; length of the list head..tail
	head     *waiter
	tail     *waiter
}

// waiter is one request waiting in the FIFO list. Waiters are pooled with
// their channel and timer so a queued request costs no allocation.
type waiter struct {
	ready      chan struct{} // cap 1; receives once when granted
	timer      *time.Timer
	prev, next *waiter
	granted    bool // guarded by Limiter.mu
}

// New returns a Limiter configured by o.
func New(o Options) *Limiter {
	o = o.withDefaults()
	set := o.Metrics
	l := &Limiter{
		retryAfter: o.RetryAfter,
		pressure:   o.Pressure,
		log:        o.Logger,
		max:        o.MaxConcurrency,
		queueCap:   o.Queue,
		timeout:    o.QueueTimeout,
		inflightG:  set.GetOrCreateGauge("bulwark_inflight_requests", nil),
		queueG:     set.GetOrCreateGauge("bulwark_queue_length", nil),
		waitH:      set.GetOrCreatePrometheusHistogramExt("bulwark_queue_wait_seconds", queueWaitBuckets),
		rejFull:    set.GetOrCreateCounter(`bulwark_admit_rejected_total{reason="queue_full"}`),
		rejTimeout: set.GetOrCreateCounter(`bulwark_admit_rejected_total{reason="queue_timeout"}`),
		rejMemory:  set.GetOrCreateCounter(`bulwark_admit_rejected_total{reason="memory"}`),
		shed:       set.GetOrCreateCounter("bulwark_memory_shed_total"),
	}
	l.inflightG.Set(0)
	l.queueG.Set(0)
	return l
}

// Acquire takes a slot, waiting in line if every slot is taken and the queue
// has room. On success it returns a release func, which must be called when
// the request is done; calling it more than once is harmless. On failure the
// error is an *httperr.Error (503 with reason "queue_full", "queue_timeout"
// or "memory", carrying Retry-After), or ctx.Err() when ctx ended first.
func (l *Limiter) Acquire(ctx context.Context) (release func(), err error) {
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	var done sync.Once
	return func() { done.Do(l.release) }, nil
}

// Middleware returns a handler that takes a slot before calling next and
// gives it back when next returns. A request that gets no slot is answered
// with the 503 from Acquire; one whose client went away is not answered.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := l.acquire(r.Context()); err != nil {
			if _, ok := err.(*httperr.Error); !ok {
				// The client went away while queued: record, don't answer.
				err = &httperr.Error{Status: httperr.StatusClientClosed, Reason: "client_closed", Err: err}
			}
			httperr.Write(w, r, err)
			return
		}
		defer l.release()
		next.ServeHTTP(w, r)
	})
}

// acquire is Acquire without the release closure: it allocates nothing when
// a slot is free.
func (l *Limiter) acquire(ctx context.Context) error {
	if l.pressure != nil && l.pressure() {
		l.rejMemory.Inc()
		l.shed.Inc()
		return l.reject(ReasonMemory, "Bulwark is short of memory and is shedding load; retry shortly", nil)
	}
	l.mu.Lock()
	if l.inflight < l.max && l.head == nil {
		l.inflight++
		l.inflightG.Set(float64(l.inflight))
		l.mu.Unlock()
		return nil
	}
	if l.queued >= l.queueCap {
		l.mu.Unlock()
		l.rejFull.Inc()
		return l.reject(ReasonQueueFull, "the app is at its concurrency limit and the queue is full", nil)
	}
	if err := ctx.Err(); err != nil {
		l.mu.Unlock()
		return err
	}
	w := l.getWaiter()
	l.pushLocked(w)
	timeout := l.timeout
	l.mu.Unlock()

	start := time.Now()
	w.timer.Reset(timeout)
	defer func() {
		w.timer.Stop()
		l.waitH.Update(time.Since(start).Seconds())
		l.putWaiter(w)
	}()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		if l.leave(w) {
			// Granted in the same instant: pass the slot on.
			<-w.ready
			l.release()
		}
		return ctx.Err()
	case <-w.timer.C:
		if l.leave(w) {
			<-w.ready
			return nil // the slot came just in time: use it
		}
		l.rejTimeout.Inc()
		return l.reject(ReasonQueueTimeout, "the app was busy for too long", nil)
	}
}

// leave takes w out of the queue and reports whether it had been granted a
// slot meanwhile (then it is already out of the queue and holds the slot).
func (l *Limiter) leave(w *waiter) (granted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.granted {
		return true
	}
	l.removeLocked(w)
	return false
}

// release gives a slot back and hands free slots to waiters in order.
func (l *Limiter) release() {
	l.mu.Lock()
	l.inflight--
	l.grantLocked()
	l.inflightG.Set(float64(l.inflight))
	l.mu.Unlock()
}

// grantLocked moves waiters from the head of the queue into free slots.
func (l *Limiter) grantLocked() {
	for l.inflight < l.max && l.head != nil {
		w := l.head
		l.removeLocked(w)
		w.granted = true
		l.inflight++
		w.ready <- struct{}{} // cap 1, sent once per wait: never blocks
	}
}

func (l *Limiter) pushLocked(w *waiter) {
	w.prev, w.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = w
	} else {
		l.head = w
	}
	l.tail = w
	l.queued++
	l.queueG.Set(float64(l.queued))
}

func (l *Limiter) removeLocked(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next = nil, nil
	l.queued--
	l.queueG.Set(float64(l.queued))
}

func (l *Limiter) getWaiter() *waiter {
	if w, ok := l.pool.Get().(*waiter); ok {
		w.granted = false
		return w
	}
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &waiter{ready: make(chan struct{}, 1), timer: t}
}

func (l *Limiter) putWaiter(w *waiter) {
	l.pool.Put(w)
}

func (l *Limiter) reject(reason, msg string, err error) error {
	l.log.Debug("request not admitted", "reason", reason)
	return &httperr.Error{
		Status:     http.StatusServiceUnavailable,
		Reason:     reason,
		Msg:        msg,
		RetryAfter: l.retryAfter,
		Err:        err,
	}
}

// SetLimits changes the limits live, as on a config reload; the arguments
// mean what the Options fields of the same names mean, defaults included.
// Raising maxConcurrency admits waiters at once; lowering it lets requests
// in flight finish and admits no one until the count is below the new
// limit. Lowering queue turns new arrivals away while the queue is longer,
// without evicting those already waiting; a new queueTimeout applies to
// requests that start waiting from now on.
func (l *Limiter) SetLimits(maxConcurrency, queue int, queueTimeout time.Duration) {
	maxConcurrency, queue, queueTimeout = limits(maxConcurrency, queue, queueTimeout)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.max, l.queueCap, l.timeout = maxConcurrency, queue, queueTimeout
	l.grantLocked()
	l.inflightG.Set(float64(l.inflight))
}

// Stats returns the current counts and limits.
func (l *Limiter) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{InFlight: l.inflight, Queued: l.queued, MaxConcurrency: l.max, Queue: l.queueCap}
}
