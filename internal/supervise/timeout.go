package supervise

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"bulwark/internal/httperr"
)

// ReasonRequestTimeoutAnswer is the reason of the 504 a client gets when
// its worker did not answer within request_timeout.
const ReasonRequestTimeoutAnswer = "app_request_timeout"

// serveTimed serves r through next with a limit on the wait for the head
// of the answer: past timeout the request is cancelled, its client gets a
// 504 that says why, no new request goes to the worker's process (addr)
// and the worker is replaced. Once the head is written the request runs
// on unbounded (a stream, a long download).
//
// The clock measures time on a worker, not time waiting for one: when the
// worker's process dies under the request and the proxy waits (Wait) to
// send it again, the clock stops, and starts afresh for the new try. A
// request that then runs out of time is answered 504, but no worker is
// replaced for it: the process that held it is gone, and the pool does not
// know which worker the proxy's retry went to.
func (p *Pool) serveTimed(w http.ResponseWriter, r *http.Request, next http.Handler, wk *worker, addr string, timeout time.Duration) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	tw := &timedWriter{ResponseWriter: w}
	pid := wk.pid.Load()
	tr := &timedRequest{timeout: timeout}
	tr.timer = time.AfterFunc(timeout, func() {
		if !tw.expire() {
			return
		}
		cancel()
		if tr.retried.Load() || wk.pid.Load() != pid {
			p.log.Warn("request got no answer within request_timeout after its worker's process ended: the client gets 504; no worker is replaced",
				"worker", wk.index, "pid", pid, "method", r.Method, "path", r.URL.Path, "request_timeout", timeout)
			return
		}
		tr.replacing.Store(true)
		wk.mu.Lock()
		wk.stuckAddr = addr
		wk.mu.Unlock()
		p.refresh()
		p.log.Warn("worker did not answer within request_timeout: the client gets 504 and the worker is replaced",
			"worker", wk.index, "pid", pid, "method", r.Method, "path", r.URL.Path, "request_timeout", timeout)
		p.recycleAsync(wk, ReasonRequestTimeout)
	})
	next.ServeHTTP(tw, r.WithContext(context.WithValue(ctx, timedRequestKey{}, tr)))
	tr.timer.Stop()
	if tw.expired() {
		msg := fmt.Sprintf("the app did not answer within app.request_timeout (%v); Bulwark is replacing the worker that held this request", timeout)
		if !tr.replacing.Load() {
			msg = fmt.Sprintf("the app did not answer within app.request_timeout (%v) after the worker that held this request ended", timeout)
		}
		httperr.Write(w, r, &httperr.Error{Status: http.StatusGatewayTimeout, Reason: ReasonRequestTimeoutAnswer, Msg: msg})
	}
}

// timedRequest is the request_timeout clock of one request, which Wait
// stops while the request waits to be sent again.
type timedRequest struct {
	timer     *time.Timer
	timeout   time.Duration
	retried   atomic.Bool // the clock was started afresh for a new try
	replacing atomic.Bool // its time ran out and its worker is being replaced
}

type timedRequestKey struct{}

// pause stops the clock of the request ctx belongs to, if it runs, and
// returns what starts it afresh; nil when there is nothing to start.
func pauseClock(ctx context.Context) func() {
	tr, _ := ctx.Value(timedRequestKey{}).(*timedRequest)
	if tr == nil || !tr.timer.Stop() {
		return nil // not timed, or its time already ran out
	}
	return func() {
		tr.retried.Store(true)
		tr.timer.Reset(tr.timeout)
	}
}

// timedWriter passes an answer through until its head is written; after
// expire, whatever the cancelled request writes (the proxy's answer to its
// own cancellation) is dropped, so that serveTimed can answer 504.
type timedWriter struct {
	http.ResponseWriter
	mu      sync.Mutex
	head    bool // a final head went out: the timeout no longer applies
	timeout bool // expired before the head
}

// expire marks the request timed out unless its head went out; it reports
// whether it did.
func (t *timedWriter) expire() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.head {
		return false
	}
	t.timeout = true
	return true
}

func (t *timedWriter) expired() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.timeout
}

// pass reports whether a write may go out, marking the head sent when it
// is a final one.
func (t *timedWriter) pass(final bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.timeout {
		return false
	}
	if final {
		t.head = true
	}
	return true
}

func (t *timedWriter) WriteHeader(code int) {
	if t.pass(code >= 200) {
		t.ResponseWriter.WriteHeader(code)
	}
}

func (t *timedWriter) Write(b []byte) (int, error) {
	if !t.pass(true) {
		return len(b), nil
	}
	return t.ResponseWriter.Write(b)
}

// Flush is here so that http.ResponseController does not reach past the
// wrapper and send a head after the timeout.
func (t *timedWriter) Flush() {
	if !t.pass(true) {
		return
	}
	_ = http.NewResponseController(t.ResponseWriter).Flush()
}

// Hijack is for protocol switches, which Gate does not time; it is here
// so the wrapper hides nothing.
func (t *timedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	t.pass(true)
	return http.NewResponseController(t.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the deadlines and the rest.
func (t *timedWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }
