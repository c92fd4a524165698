package supervise

import (
	"fmt"
	"time"
)

// recycleAsync recycles wk for reason from a goroutine, unless a recycle
// of wk is already queued or running.
func (p *Pool) recycleAsync(wk *worker, reason string) {
	if !wk.busy.CompareAndSwap(false, true) {
		return
	}
	go func() {
		if err := p.recycleBusy(wk, reason); err != nil {
			p.log.Error("worker recycle failed", "worker", wk.index, "reason", reason, "err", err)
		}
	}()
}

// recycleBusy recycles wk, whose busy flag the caller set, after any other
// recycle: a replacement next to it when one fits (WorkerFits), else in
// place while the other workers take its share.
func (p *Pool) recycleBusy(wk *worker, reason string) error {
	defer wk.busy.Store(false)
	p.roll.Lock()
	defer p.roll.Unlock()
	p.log.Info("recycling worker", "worker", wk.index, "pid", wk.pid.Load(), "reason", reason,
		"served", wk.served.Load())
	if err := wk.sup.Restart(reason); err != nil {
		return fmt.Errorf("worker %d: %w", wk.index, err)
	}
	p.noteRecycle(wk, reason)
	return nil
}

func (p *Pool) noteRecycle(wk *worker, reason string) {
	if c, ok := p.recycles[reason]; ok {
		c.Inc()
	}
	wk.mu.Lock()
	wk.lastReason, wk.lastAt = reason, time.Now()
	wk.mu.Unlock()
}

// Recycle recycles worker i for reason ("memory" from its watcher) and
// returns once its replacement serves; a recycle of i already queued or
// running makes it return nil at once. One worker is recycled at a time.
func (p *Pool) Recycle(i int, reason string) error {
	if i < 0 || i >= len(p.workers) {
		return fmt.Errorf("no worker %d", i)
	}
	wk := p.workers[i]
	if !wk.busy.CompareAndSwap(false, true) {
		return nil
	}
	return p.recycleBusy(wk, reason)
}

// RecycleHard restarts worker i at once, its process first, for a memory
// above the hard ceiling; a recycle of it in progress is told to stop the
// old copy now (Urgent). It does not wait for other recycles: the worker
// is still growing.
func (p *Pool) RecycleHard(i int) error {
	if i < 0 || i >= len(p.workers) {
		return fmt.Errorf("no worker %d", i)
	}
	wk := p.workers[i]
	if !wk.busy.CompareAndSwap(false, true) {
		wk.sup.Urgent()
		return nil
	}
	defer wk.busy.Store(false)
	if err := wk.sup.RestartHard(ReasonMemory); err != nil {
		return fmt.Errorf("worker %d: %w", i, err)
	}
	p.noteRecycle(wk, ReasonMemory)
	return nil
}

// Restart rolls the pool for reason ("manual", "reload"): one worker after
// the other, each replaced as by Recycle. When a worker's replacement does
// not become ready the roll stops there, the workers not reached keep
// serving, and the error (with a *StartError in its chain) says so.
func (p *Pool) Restart(reason string) error {
	return p.roll1(reason, func(wk *worker) error { return wk.sup.Restart(reason) })
}

// UpdateWait applies new app options worker after worker (a reload); a
// worker whose new process does not become ready stops the roll and its
// error is returned, the workers not reached keep their old process and
// options. Options that need no restart apply to every worker.
func (p *Pool) UpdateWait(po PoolOptions) error {
	cur := p.opts.Load()
	po.App.Metrics, po.App.Logger = cur.App.Metrics, cur.App.Logger
	po.App.env = cur.App.env
	po.App = po.App.withDefaults()
	po.Workers, po.Route = len(p.workers), cur.Route
	p.opts.Store(&po)
	p.hold.Store(int64(po.App.RestartHold))
	return p.roll1(ReasonReload, func(wk *worker) error {
		return wk.sup.UpdateWait(p.workerOptions(wk, po.App))
	})
}

// roll1 applies do to every worker in turn under the roll lock.
func (p *Pool) roll1(reason string, do func(*worker) error) error {
	p.roll.Lock()
	defer p.roll.Unlock()
	for _, wk := range p.workers {
		before := wk.pid.Load()
		// The flag may belong to a recycle queued or running already:
		// leave it to that one.
		was := wk.busy.Swap(true)
		err := do(wk)
		if !was {
			wk.busy.Store(false)
		}
		if err != nil {
			return fmt.Errorf("worker %d of %d: %w; the roll stopped there and the workers not yet replaced keep serving",
				wk.index+1, len(p.workers), err)
		}
		if wk.pid.Load() != before {
			p.noteRecycle(wk, reason)
		}
	}
	return nil
}
