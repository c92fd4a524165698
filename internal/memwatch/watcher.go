package memwatch

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Defaults for Options fields left zero.
const (
	// DefaultInterval is the sampling interval: the guide's monitor looked
	// every 30 s, too slow to catch a leak before the kernel does.
	DefaultInterval = 5 * time.Second
	// DefaultSamples is how many consecutive samples over the limit trigger
	// OnExceed, so one short spike does not cost a restart.
	DefaultSamples = 3
	// DefaultGrace is how long after Watch no OnExceed is reported: imports
	// and warm-up make a fresh app briefly larger than its steady state.
	DefaultGrace = 30 * time.Second
)

// Options configures a Watcher.
type Options struct {
	// ProcRoot is where proc is mounted. If "", DefaultProcRoot is used.
	ProcRoot string
	// Interval is the time between samples. If zero, DefaultInterval.
	Interval time.Duration
	// Limit is the RSS of the whole tree, in bytes, above which a sample
	// counts as over. Zero or negative means never over.
	Limit int64
	// Samples is how many consecutive samples over Limit trigger OnExceed.
	// If zero, DefaultSamples.
	Samples int
	// Grace is how long after Watch no OnExceed is reported. If zero,
	// DefaultGrace; negative means no grace.
	Grace time.Duration
	// OnExceed is called from the Run goroutine when the tree stayed over
	// Limit. It must not block long (start a goroutine for slow work). After
	// it is called the count starts again and a new grace period begins.
	// If nil, overuse is only logged.
	OnExceed func(TreeSample)
	// Metrics receives the bulwark_app_* and bulwark_machine_* gauges. If
	// nil, a private set is used.
	Metrics *metrics.Set
	// Logger receives warnings. If nil, nothing is logged.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.ProcRoot == "" {
		o.ProcRoot = DefaultProcRoot
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Samples <= 0 {
		o.Samples = DefaultSamples
	}
	if o.Grace == 0 {
		o.Grace = DefaultGrace
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}

// Watcher samples the memory of one process tree and reports sustained
// overuse. Its methods are safe for concurrent use.
type Watcher struct {
	opts  Options
	limit atomic.Int64

	mu        sync.Mutex
	root      int       // guarded by mu; 0 = nothing to watch
	watchedAt time.Time // guarded by mu; start of the grace period
	over      int       // guarded by mu; consecutive samples over the limit
	last      TreeSample
	gone      bool // guarded by mu; root vanished, logged once

	rss, pss, procs, available, limitG *metrics.Gauge

	// now asks Run for a sample at once (a new root was watched), so views
	// do not show an empty tree for a whole interval.
	now chan struct{}
}

// New returns a Watcher that watches nothing until Watch is called.
func New(o Options) *Watcher {
	o = o.withDefaults()
	w := &Watcher{
		opts:      o,
		rss:       o.Metrics.GetOrCreateGauge("bulwark_app_rss_bytes", nil),
		pss:       o.Metrics.GetOrCreateGauge("bulwark_app_pss_bytes", nil),
		procs:     o.Metrics.GetOrCreateGauge("bulwark_app_processes", nil),
		available: o.Metrics.GetOrCreateGauge("bulwark_machine_memory_available_bytes", nil),
		limitG:    o.Metrics.GetOrCreateGauge("bulwark_app_max_memory_bytes", nil),
		now:       make(chan struct{}, 1),
	}
	w.SetLimit(o.Limit)
	return w
}

// Watch starts watching the tree rooted at pid (a new app process),
// resetting the over-limit count and starting a new grace period.
func (w *Watcher) Watch(pid int) {
	w.watch(pid, time.Now())
}

func (w *Watcher) watch(pid int, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.root, w.watchedAt, w.over, w.gone = pid, now, 0, false
	select {
	case w.now <- struct{}{}:
	default:
	}
}

// Last returns the latest sample; its Root is 0 before the first one.
func (w *Watcher) Last() TreeSample {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// SetLimit changes the limit (on reload); zero or negative means never over.
func (w *Watcher) SetLimit(limit int64) {
	w.limit.Store(limit)
	w.limitG.Set(float64(max(limit, 0)))
}

// Run samples every Interval until ctx is done, then returns nil. It is the
// only goroutine that calls OnExceed.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	for {
		w.sample(time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-w.now:
		}
	}
}

// sample takes one sample and, when the tree has stayed over the limit,
// calls OnExceed (outside the lock).
func (w *Watcher) sample(now time.Time) {
	if m, err := Machine(w.opts.ProcRoot); err == nil {
		w.available.Set(float64(m.MemAvailable))
	}
	w.mu.Lock()
	root := w.root
	w.mu.Unlock()
	if root == 0 {
		return
	}
	ts, err := treeOf(w.opts.ProcRoot, root, now)
	exceeded, ok := w.record(root, ts, err, now)
	if !ok {
		return
	}
	w.rss.Set(float64(ts.RSS))
	w.pss.Set(float64(ts.PSS))
	w.procs.Set(float64(len(ts.Procs)))
	if exceeded {
		w.opts.Logger.Warn("app memory over the limit",
			"rss", ts.RSS, "pss", ts.PSS, "limit", w.limit.Load(),
			"samples", w.opts.Samples, "processes", len(ts.Procs), "pid", root)
		if w.opts.OnExceed != nil {
			w.opts.OnExceed(ts)
		}
	}
}

// record updates the state with one sample and reports whether OnExceed is
// due; ok is false when the sample is to be ignored.
func (w *Watcher) record(root int, ts TreeSample, err error, now time.Time) (exceeded, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if root != w.root {
		return false, false // Watch moved on while we sampled
	}
	if err != nil {
		if !w.gone {
			w.gone = true
			lvl := slog.LevelWarn
			if errors.Is(err, fs.ErrNotExist) {
				lvl = slog.LevelDebug // the app exited; the supervisor says why
			}
			w.opts.Logger.Log(context.Background(), lvl, "cannot sample app memory", "pid", root, "err", err)
		}
		w.over = 0
		return false, false
	}
	w.gone = false
	w.last = ts
	if limit := w.limit.Load(); limit > 0 && ts.RSS > limit {
		w.over++
	} else {
		w.over = 0
	}
	if w.over < w.opts.Samples || (w.opts.Grace > 0 && now.Sub(w.watchedAt) < w.opts.Grace) {
		return false, true
	}
	w.over = 0
	w.watchedAt = now
	return true, true
}
