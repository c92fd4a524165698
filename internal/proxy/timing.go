package proxy

import (
	"context"
	"sync/atomic"
	"time"
)

// Timing records, for one request, how long the app took. The access log
// creates it with WithTiming before the chain and reads it after. The
// methods are safe for concurrent use and on a nil *Timing.
type Timing struct {
	wait     atomic.Int64 // time.Duration
	upstream atomic.Int64 // time.Duration
	reason   atomic.Pointer[string]
}

type timingKey struct{}

// WithTiming returns a context carrying a new Timing, which the Proxy
// fills in for requests served under that context.
func WithTiming(ctx context.Context) (context.Context, *Timing) {
	c := &timingCtx{Context: ctx}
	return c, &c.t
}

// timingCtx is a context carrying a Timing: one allocation where
// context.WithValue and a separate Timing are two.
type timingCtx struct {
	context.Context
	t Timing
}

func (c *timingCtx) Value(key any) any {
	if key == (timingKey{}) {
		return &c.t
	}
	return c.Context.Value(key)
}

// TimingOf returns the Timing WithTiming put in ctx, or nil.
func TimingOf(ctx context.Context) *Timing { return timingFrom(ctx) }

func timingFrom(ctx context.Context) *Timing {
	t, _ := ctx.Value(timingKey{}).(*Timing)
	return t
}

// Wait returns the time from handing the request to the app's connection
// (connecting included) to the app's response head: the time spent waiting
// for the app; on a failure, up to the failure (retry included). Zero if the
// request was never sent, as for a 413.
func (t *Timing) Wait() time.Duration {
	if t == nil {
		return 0
	}
	return time.Duration(t.wait.Load())
}

// Upstream returns the whole time the proxy spent on the request, from
// before connecting to the app to the last byte of its answer.
func (t *Timing) Upstream() time.Duration {
	if t == nil {
		return 0
	}
	return time.Duration(t.upstream.Load())
}

// Reason returns the reason of the answer the proxy made itself (such as
// "connect", "timeout", "body_too_large", or "client_closed" when the
// client went away and nothing was sent), or "" when the app's answer was
// relayed whole.
func (t *Timing) Reason() string {
	if t == nil {
		return ""
	}
	if r := t.reason.Load(); r != nil {
		return *r
	}
	return ""
}

func (t *Timing) setReason(r string) {
	if t != nil {
		t.reason.Store(&r)
	}
}
