package memwatch

import (
	"context"
	"errors"
	"fmt"
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
	// DefaultInterval is the sampling interval while the app is well under
	// its limit: the guide's monitor looked every 30 s, and even 5 s let a
	// fast leak reach three times its budget before the restart began.
	DefaultInterval = time.Second
	// DefaultFastInterval is the sampling interval while the tree is above
	// HotFraction of its limit or growing towards it fast: a leak of 50 MB/s
	// moves 5 MB between samples.
	DefaultFastInterval = 100 * time.Millisecond
	// DefaultSamples is how many consecutive samples over the limit trigger
	// the graceful restart, so one short spike does not cost a restart.
	DefaultSamples = 3
	// DefaultGrace is how long after Watch no OnExceed is reported: imports
	// and warm-up make a fresh app briefly larger than its steady state.
	DefaultGrace = 30 * time.Second
)

// The rule's fixed ratios.
const (
	// HardFactor times the limit is the hard ceiling: a tree above it is
	// reported at the first sample, as Exceed.Hard.
	HardFactor = 1.25
	// HotFraction of the limit is where sampling turns fast.
	HotFraction = 0.8
	// growthHorizon: a tree that would reach its limit within this time at
	// the rate it grew since the last sample is sampled fast.
	growthHorizon = 10 * time.Second
)

// Exceed is what OnExceed is told.
type Exceed struct {
	// Sample is the sample that crossed the line.
	Sample TreeSample
	// Hard is true for the hard rule: the tree is above Limit × HardFactor,
	// or the box's available memory fell under the floor while the tree
	// holds at least half its limit. The caller should restart at once and
	// not start a second copy next to this one. Hard is reported once per
	// watched root.
	Hard bool
	// Reason says which rule fired, for the log.
	Reason string
	// Available is the box's available memory at the sample (see Box); 0
	// when unknown.
	Available int64
}

// Options configures a Watcher.
type Options struct {
	// ProcRoot is where proc is mounted. If "", DefaultProcRoot is used.
	ProcRoot string
	// CgroupRoot is where cgroups are mounted, for the box's limit (see
	// Box). If "", DefaultCgroupRoot.
	CgroupRoot string
	// Interval is the time between samples while the tree is well under its
	// limit. If zero, DefaultInterval.
	Interval time.Duration
	// FastInterval is the time between samples while the tree is above
	// HotFraction of its limit, or growing fast towards it. If zero,
	// DefaultFastInterval; it is never longer than Interval.
	FastInterval time.Duration
	// Limit is the RSS of the whole tree, in bytes, above which a sample
	// counts as over. Zero or negative means never over.
	Limit int64
	// Samples is how many consecutive samples over Limit, spanning at least
	// (Samples-1) × Interval, trigger the graceful OnExceed. If zero,
	// DefaultSamples.
	Samples int
	// Grace is how long after Watch (and after a graceful OnExceed) no
	// graceful OnExceed is reported; the hard rule ignores it. If zero,
	// DefaultGrace; negative means no grace.
	Grace time.Duration
	// Floor is the box's available memory under which the hard rule fires
	// (for a tree above half its limit). If zero, DefaultFloor of the
	// box's memory; negative disables the floor.
	Floor int64
	// OnExceed is called from the Run goroutine when a rule fires. It must
	// not block long (start a goroutine for slow work). After a graceful
	// report the count starts again and a new grace period begins. If nil,
	// overuse is only logged.
	OnExceed func(Exceed)
	// Source reads the box and the process table. Watchers that share one
	// share its walks of /proc (see Source). If nil, a private one on
	// ProcRoot and CgroupRoot.
	Source *Source
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
	if o.FastInterval <= 0 {
		o.FastInterval = DefaultFastInterval
	}
	o.FastInterval = min(o.FastInterval, o.Interval)
	if o.Samples <= 0 {
		o.Samples = DefaultSamples
	}
	if o.Grace == 0 {
		o.Grace = DefaultGrace
	}
	if o.Source == nil {
		o.Source = NewSource(o.ProcRoot, o.CgroupRoot)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}

// Watcher samples the memory of one process tree and reports overuse. Its
// methods are safe for concurrent use.
type Watcher struct {
	opts  Options
	limit atomic.Int64

	mu        sync.Mutex
	root      int       // guarded by mu; 0 = nothing to watch
	watchedAt time.Time // guarded by mu; start of the grace period
	over      int       // guarded by mu; consecutive samples over the limit
	overSince time.Time // guarded by mu; the first of them
	hardFired bool      // guarded by mu; the hard rule fired for root
	baseline  int64     // guarded by mu; the tree's RSS when its grace ended
	last      TreeSample
	gone      bool // guarded by mu; root vanished, logged once

	rss, pss, procs, available, limitG *metrics.Gauge

	// fullAt is when the last full walk of /proc was; owned by Run: the
	// fast samples in between only re-read the known processes' RSS.
	fullAt time.Time

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
	w.root, w.watchedAt, w.over, w.gone, w.hardFired, w.baseline = pid, now, 0, false, false, 0
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

// Baseline returns the tree's RSS at the first sample after its grace
// period, what a fresh copy of the app holds; 0 before that.
func (w *Watcher) Baseline() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.baseline
}

// SetLimit changes the limit (on reload); zero or negative means never over.
func (w *Watcher) SetLimit(limit int64) {
	w.limit.Store(limit)
	w.limitG.Set(float64(max(limit, 0)))
}

// Run samples until ctx is done, every Interval, or every FastInterval
// while the tree is near its limit, then returns nil. It is the only
// goroutine that calls OnExceed.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-w.now:
			t.Stop()
		}
		t.Reset(w.sample(time.Now()))
	}
}

// sample takes one sample, calls OnExceed (outside the lock) when a rule
// fires, and returns the time until the next sample.
func (w *Watcher) sample(now time.Time) time.Duration {
	// A read shared with other watchers may be this old: half the gap
	// between samples, so each sample still sees a fresh one of its own.
	box, boxErr := w.opts.Source.Box(now, w.opts.FastInterval/2)
	if boxErr == nil {
		w.available.Set(float64(box.MemAvailable))
	}
	w.mu.Lock()
	root, prev := w.root, w.last
	w.mu.Unlock()
	if root == 0 {
		return w.opts.Interval
	}
	var ts TreeSample
	var err error
	if prev.Root == root && len(prev.Procs) > 0 && now.Sub(w.fullAt) < w.opts.Interval {
		ts, err = refresh(w.opts.ProcRoot, prev, now) // between full samples
	} else {
		var t *Table
		if t, err = w.opts.Source.Table(now, w.opts.Interval/2, root); err == nil {
			ts, err = t.Sample(root, now)
		}
		w.fullAt = now
	}
	ex, ok := w.record(root, ts, err, now, box)
	if !ok {
		return w.opts.Interval
	}
	w.rss.Set(float64(ts.RSS))
	w.pss.Set(float64(ts.PSS))
	w.procs.Set(float64(len(ts.Procs)))
	if ex != nil {
		lvl := slog.LevelWarn
		if ex.Hard {
			lvl = slog.LevelError
		}
		w.opts.Logger.Log(context.Background(), lvl, "app memory over the limit: "+ex.Reason,
			"rss", ts.RSS, "pss", ts.PSS, "limit", w.limit.Load(), "available", ex.Available,
			"processes", len(ts.Procs), "pid", root, "hard", ex.Hard)
		if w.opts.OnExceed != nil {
			w.opts.OnExceed(*ex)
		}
	}
	if w.hot(prev, ts) {
		return w.opts.FastInterval
	}
	return w.opts.Interval
}

// hot reports whether the tree is near its limit or growing fast towards
// it, so that the next sample comes sooner.
func (w *Watcher) hot(prev, ts TreeSample) bool {
	limit := w.limit.Load()
	if limit <= 0 {
		return false
	}
	if float64(ts.RSS) >= HotFraction*float64(limit) {
		return true
	}
	if prev.Root != ts.Root || prev.At.IsZero() || !ts.At.After(prev.At) || ts.RSS <= prev.RSS {
		return false
	}
	rate := float64(ts.RSS-prev.RSS) / ts.At.Sub(prev.At).Seconds()
	return float64(ts.RSS)+rate*growthHorizon.Seconds() >= float64(limit)
}

// record updates the state with one sample and returns the report due, if
// any; ok is false when the sample is to be ignored.
func (w *Watcher) record(root int, ts TreeSample, err error, now time.Time, box MachineSample) (ex *Exceed, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if root != w.root {
		return nil, false // Watch moved on while we sampled
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
		return nil, false
	}
	w.gone = false
	w.last = ts
	inGrace := w.opts.Grace > 0 && now.Sub(w.watchedAt) < w.opts.Grace
	if w.baseline == 0 && !inGrace {
		w.baseline = ts.RSS
	}
	limit := w.limit.Load()
	if limit <= 0 {
		w.over = 0
		return nil, true
	}
	if ts.RSS > limit {
		if w.over == 0 {
			w.overSince = now
		}
		w.over++
	} else {
		w.over = 0
	}
	if !w.hardFired {
		floor := w.opts.Floor
		if floor == 0 && box.MemTotal > 0 {
			floor = DefaultFloor(box.MemTotal)
		}
		switch {
		case float64(ts.RSS) > HardFactor*float64(limit):
			w.hardFired = true
			return &Exceed{Sample: ts, Hard: true, Available: box.MemAvailable,
				Reason: fmt.Sprintf("above the hard ceiling (%.2f × max_memory) at one sample", HardFactor)}, true
		case floor > 0 && box.MemTotal > 0 && box.MemAvailable < floor && ts.RSS > limit/2:
			w.hardFired = true
			return &Exceed{Sample: ts, Hard: true, Available: box.MemAvailable,
				Reason: fmt.Sprintf("the box's available memory is under its floor (%d bytes)", floor)}, true
		}
	}
	sustained := now.Sub(w.overSince) >= time.Duration(w.opts.Samples-1)*w.opts.Interval
	if w.over < w.opts.Samples || !sustained || inGrace {
		return nil, true
	}
	w.over = 0
	w.watchedAt = now
	return &Exceed{Sample: ts, Available: box.MemAvailable,
		Reason: fmt.Sprintf("above max_memory for %d samples", w.opts.Samples)}, true
}
