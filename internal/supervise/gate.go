package supervise

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"bulwark/internal/httperr"
)

// retryAfter is the Retry-After sent with the 503 when the hold runs out:
// by then the app has been down for RestartHold already, so a client that
// retries sooner than a few seconds would only add load.
const retryAfter = 5 * time.Second

// Gate states.
const (
	gateClosed  = iota // requests wait
	gateOpen           // requests pass
	gateStopped        // the supervisor stopped: requests are answered at once
	gateFailing        // the app's last start failed: requests are answered at once
)

// generation counts the requests in flight that entered through the gate
// while one app instance was current, so a zero-downtime swap drains only
// the old instance's requests.
type generation struct {
	n int // guarded by gate.mu
}

// gate holds requests while the app is not ready. Its methods are safe for
// concurrent use.
type gate struct {
	hold   atomic.Int64 // time.Duration: how long a request may wait
	held   *metrics.Counter
	holdH  *metrics.PrometheusHistogram
	total  atomic.Int64 // requests in flight through the gate
	notify func()       // test hook: called when a request starts waiting

	// onChange, if not nil, is called after every change of state, outside
	// mu (the pool's view of which workers take requests).
	onChange func()

	mu    sync.Mutex
	state int           // guarded by mu
	openc chan struct{} // guarded by mu; closed whenever state != gateClosed
	gen   *generation   // guarded by mu
	addr  string        // guarded by mu; the serving instance's address
}

func newGate(set *metrics.Set, hold time.Duration) *gate {
	g := &gate{
		held:  set.GetOrCreateCounter("bulwark_gate_held_total"),
		holdH: set.GetOrCreatePrometheusHistogram("bulwark_gate_hold_seconds"),
		openc: make(chan struct{}),
		gen:   &generation{},
	}
	g.hold.Store(int64(hold))
	return g
}

// errUnavailable is the answer when the hold runs out or the app is stopped.
func errUnavailable(cause error) error {
	return &httperr.Error{
		Status:     http.StatusServiceUnavailable,
		Reason:     "app_unavailable",
		Msg:        "the application is restarting; try again shortly",
		RetryAfter: retryAfter,
		Err:        cause,
	}
}

// errFailing is the answer while the app fails to start. It says no more:
// the app's stderr may hold secrets, and the log and status have it.
var errFailing = &httperr.Error{
	Status:     http.StatusServiceUnavailable,
	Reason:     "app_failing",
	Msg:        "the application is failing to start; the operator can see why in Bulwark's log or `bulwark status`",
	RetryAfter: retryAfter,
}

var (
	errHoldExpired = errors.New("app not ready within restart_hold")
	errStopped     = errors.New("app supervisor stopped")
)

// wait blocks until the gate is open, the hold runs out, or ctx is done.
// When count is true and the gate is open, the request is counted in the
// current generation, which the caller must pass to leave.
func (g *gate) wait(ctx context.Context, count bool) (*generation, error) {
	var start time.Time
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
			g.holdH.Update(time.Since(start).Seconds())
		}
	}()
	for { // each pass consumes a state change; the timer bounds them
		g.mu.Lock()
		switch g.state {
		case gateOpen:
			gen := g.gen
			if count {
				gen.n++
				g.total.Add(1)
			}
			g.mu.Unlock()
			return gen, nil
		case gateStopped:
			g.mu.Unlock()
			return nil, errUnavailable(errStopped)
		case gateFailing:
			g.mu.Unlock()
			return nil, errFailing
		}
		openc := g.openc
		g.mu.Unlock()
		if timer == nil {
			start = time.Now()
			timer = time.NewTimer(time.Duration(g.hold.Load()))
			if count {
				g.held.Inc()
			}
			if g.notify != nil {
				g.notify()
			}
		}
		select {
		case <-openc:
		case <-timer.C:
			return nil, errUnavailable(errHoldExpired)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// leave ends a request counted by wait.
func (g *gate) leave(gen *generation) {
	g.mu.Lock()
	gen.n--
	g.mu.Unlock()
	g.total.Add(-1)
}

func (g *gate) set(state int) {
	g.mu.Lock()
	if g.state == state {
		g.mu.Unlock()
		return
	}
	switch {
	case state == gateClosed:
		g.openc = make(chan struct{})
	case g.state == gateClosed:
		close(g.openc) // releases every waiter at once
	}
	g.state = state
	g.mu.Unlock()
	if g.onChange != nil {
		g.onChange()
	}
}

// setAddr records the address requests entering from now on go to.
func (g *gate) setAddr(addr string) {
	g.mu.Lock()
	g.addr = addr
	g.mu.Unlock()
}

// tryEnter counts a request in the current generation when the gate is
// open, and returns it with the address the request must go to; ok is
// false, and nothing counted, when the gate is not open.
func (g *gate) tryEnter() (gen *generation, addr string, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state != gateOpen {
		return nil, "", false
	}
	g.gen.n++
	g.total.Add(1)
	return g.gen, g.addr, true
}

// swap starts a new generation and returns the old one for draining.
func (g *gate) swap() *generation {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.gen
	g.gen = &generation{}
	return old
}

// current returns the current generation.
func (g *gate) current() *generation {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gen
}

// drain waits until no request of gen is in flight, for at most timeout,
// and reports whether it got there.
func (g *gate) drain(ctx context.Context, gen *generation, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		g.mu.Lock()
		n := gen.n
		g.mu.Unlock()
		if n <= 0 {
			return true
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// Gate returns next wrapped in the hold gate: while the app is not ready a
// request waits (up to RestartHold) and is then answered 503
// "app_unavailable" with Retry-After; a client that leaves while waiting
// gets nothing. Requests passed through are counted for the drain of a
// graceful restart.
func (s *Supervisor) Gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gen, err := s.gate.wait(r.Context(), true)
		if err != nil {
			httperr.Write(w, r, err)
			return
		}
		defer s.gate.leave(gen)
		next.ServeHTTP(w, r)
	})
}

// Wait blocks until the app is ready, for at most RestartHold: the proxy
// calls it before its one retry of a request whose app died. The error is
// an *httperr.Error (503 app_unavailable) when the hold runs out or the
// supervisor stopped, 503 app_failing at once while the app fails to
// start, or ctx.Err().
func (s *Supervisor) Wait(ctx context.Context) error {
	_, err := s.gate.wait(ctx, false)
	return err
}

// InFlight returns the number of requests in flight through the gate.
func (s *Supervisor) InFlight() int {
	return int(s.gate.total.Load())
}
