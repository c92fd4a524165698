package supervise

import (
	"context"
	"net/http"
	"slices"
	"time"

	"bulwark/internal/httperr"
)

// refresh wakes the requests waiting for a worker and gives OnAddresses
// the new list of addresses taking requests, when it changed.
func (p *Pool) refresh() {
	var addrs []string
	for _, wk := range p.workers {
		if addr, ok := wk.routable(); ok {
			addrs = append(addrs, addr)
		}
	}
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	switch {
	case len(addrs) == 0:
		p.readySince = time.Time{}
	case p.readySince.IsZero():
		p.readySince = time.Now()
	}
	publish := len(addrs) > 0 && !slices.Equal(addrs, p.published)
	if publish {
		p.published = addrs
	}
	p.mu.Unlock()
	if on := p.opts.Load().OnAddresses; publish && on != nil {
		on(addrs)
	}
}

// routable returns the address of wk when it takes requests: its gate is
// open and its process has not timed out a request.
func (wk *worker) routable() (string, bool) {
	g := wk.sup.gate
	g.mu.Lock()
	addr, open := g.addr, g.state == gateOpen
	g.mu.Unlock()
	if !open {
		return "", false
	}
	wk.mu.Lock()
	stuck := wk.stuckAddr != "" && wk.stuckAddr == addr
	wk.mu.Unlock()
	return addr, !stuck
}

// pick enters the ready worker with the fewest requests in flight, in turn
// among equals; ok is false when none is ready.
func (p *Pool) pick() (wk *worker, gen *generation, addr string, ok bool) {
	n := uint64(len(p.workers))
	for range n { // a worker may close between the look and the entry
		start := p.rr.Add(1)
		var best *worker
		var bestLoad int64
		for i := range n {
			w := p.workers[(start+i)%n]
			if _, ok := w.routable(); !ok {
				continue
			}
			if load := w.sup.gate.total.Load(); best == nil || load < bestLoad {
				best, bestLoad = w, load
			}
		}
		if best == nil {
			return nil, nil, "", false
		}
		if gen, addr, ok := best.sup.gate.tryEnter(); ok {
			return best, gen, addr, true
		}
	}
	return nil, nil, "", false
}

// state sums up the workers' gates for a request that finds none open:
// stopped when all are, failing when every one not stopped is failing.
func (p *Pool) state() int {
	stopped, failing := 0, 0
	for _, wk := range p.workers {
		wk.sup.gate.mu.Lock()
		st := wk.sup.gate.state
		wk.sup.gate.mu.Unlock()
		switch st {
		case gateStopped:
			stopped++
		case gateFailing:
			failing++
		case gateOpen:
			return gateOpen
		}
	}
	switch {
	case stopped == len(p.workers):
		return gateStopped
	case failing > 0 && stopped+failing == len(p.workers):
		return gateFailing
	}
	return gateClosed
}

// enter waits, up to the hold, for a ready worker. With count, the request
// is counted in the worker it was given; without, it only waits.
func (p *Pool) enter(ctx context.Context, count bool) (*worker, *generation, string, error) {
	var timer *time.Timer
	var start time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
			p.holdH.Update(time.Since(start).Seconds())
		}
	}()
	var changed chan struct{} // nil until a look found no worker
	for {
		if count {
			if wk, gen, addr, ok := p.pick(); ok {
				return wk, gen, addr, nil
			}
		} else if p.Ready() > 0 {
			return nil, nil, "", nil
		}
		if changed == nil {
			// Off the fast path: take the channel, then look once more,
			// since a change between the look and now would not wake us.
			p.mu.Lock()
			changed = p.changed
			p.mu.Unlock()
			continue
		}
		switch p.state() {
		case gateStopped:
			return nil, nil, "", errUnavailable(errStopped)
		case gateFailing:
			return nil, nil, "", errFailing
		}
		if timer == nil {
			start = time.Now()
			timer = time.NewTimer(time.Duration(p.hold.Load()))
			if count {
				p.held.Inc()
			}
		}
		select {
		case <-changed:
			changed = nil
		case <-timer.C:
			return nil, nil, "", errUnavailable(errHoldExpired)
		case <-ctx.Done():
			return nil, nil, "", ctx.Err()
		}
	}
}

// Gate returns next behind the pool: each request goes to one ready worker
// (Route binds it to that worker's address) and counts in its drain; while
// no worker is ready it waits, as at Supervisor.Gate. With RequestTimeout,
// a worker that has not begun its answer in time is replaced and the
// client gets 504.
func (p *Pool) Gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wk, gen, addr, err := p.enter(r.Context(), true)
		if err != nil {
			httperr.Write(w, r, err)
			return
		}
		defer wk.sup.gate.leave(gen)
		wk.reqs.Inc()
		// At or past the limit, not only at it: the count may pass it while
		// an earlier recycle of this worker still drains.
		if lim := wk.limit.Load(); wk.served.Add(1) >= lim && lim > 0 && !wk.busy.Load() {
			p.recycleAsync(wk, ReasonMaxRequests)
		}
		o := p.opts.Load()
		route, timeout := o.Route, o.RequestTimeout
		r = route(r, addr)
		if timeout > 0 && r.Header.Get("Upgrade") == "" {
			p.serveTimed(w, r, next, wk, addr, timeout)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Wait blocks until a worker is ready, for at most the hold: the proxy's
// AwaitReady. Its errors are those of Supervisor.Wait. A request under
// request_timeout does not run down its clock while it waits here: the
// clock starts afresh when the wait ends.
func (p *Pool) Wait(ctx context.Context) error {
	if resume := pauseClock(ctx); resume != nil {
		defer resume()
	}
	_, _, _, err := p.enter(ctx, false)
	return err
}

// Ready returns the number of workers that take requests now.
func (p *Pool) Ready() int {
	n := 0
	for _, wk := range p.workers {
		if _, ok := wk.routable(); ok {
			n++
		}
	}
	return n
}

// InFlight returns the requests in flight through all workers.
func (p *Pool) InFlight() int {
	n := 0
	for _, wk := range p.workers {
		n += wk.sup.InFlight()
	}
	return n
}

// Size returns the number of workers.
func (p *Pool) Size() int { return len(p.workers) }
