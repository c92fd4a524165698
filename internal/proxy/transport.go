package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync/atomic"
	"time"
)

// dial connects to the app at addr, a pool key (target.urlHost), and
// wraps the connection so every read and write carries its own deadline.
func (p *Proxy) dial(ctx context.Context, addr string) (*deadlineConn, error) {
	network, address, err := targetForDial(addr)
	if err != nil {
		return nil, &dialError{err: err}
	}
	d := net.Dialer{Timeout: p.o().ConnectTimeout}
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		if ctx.Err() == nil { // not the client giving up
			p.markDown(addr, err)
		}
		return nil, &dialError{err: err}
	}
	return &deadlineConn{Conn: c, p: p}, nil
}

// dialError marks a failure to connect to the app.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connecting to the app: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// deadlineConn gives nginx's meaning to the send and read timeouts: each
// Write must progress within send and each Read within read (give or take
// the slack of due), however long the whole exchange takes. A write also
// restarts the read clock, so time spent sending the request does not count
// against waiting for the answer (the answer is awaited while a body
// goroutine sends the body).
//
// It also closes most of the keep-alive race: when the app closed a pooled
// connection just before a request is written to it, the first write after
// a read finds the close already queued and fails without sending a byte,
// so the upstream client replays the request on a fresh connection. The
// client makes the same check (stale) before it starts a request with a
// body, so that body is not even read yet. Only a close still in flight on
// the wire can then make a request fail.
type deadlineConn struct {
	net.Conn
	p *Proxy // its options hold the send and read timeouts in force
	// afterRead is set by a Read that got data and cleared by the next
	// Write or stale check: that Write is the start of a new request on a
	// reused connection. Atomic: a body goroutine writes while the caller
	// reads.
	afterRead atomic.Bool
	peek      peeker // used by the one goroutine whose Swap of afterRead won
	// readBy and writeBy are the deadlines last armed (Unix nanoseconds).
	// Atomic for the same reason as afterRead.
	readBy, writeBy atomic.Int64
	// send and read are the timeouts of the request using the connection
	// (begin); zero means the proxy's options. Atomic, as readBy.
	send, read atomic.Int64
}

// begin takes the send and read timeouts of req, which is about to use c
// (Options.TimeoutsFor), until the next request does.
func (c *deadlineConn) begin(req *http.Request) {
	var send, read time.Duration
	if f := c.p.o().TimeoutsFor; f != nil {
		send, read = f(req)
	}
	c.send.Store(int64(max(send, 0)))
	c.read.Store(int64(max(read, 0)))
}

// readTimeout and sendTimeout are the timeouts in force on c.
func (c *deadlineConn) readTimeout() time.Duration {
	if d := c.read.Load(); d > 0 {
		return time.Duration(d)
	}
	return c.p.o().ReadTimeout
}

func (c *deadlineConn) sendTimeout() time.Duration {
	if d := c.send.Load(); d > 0 {
		return time.Duration(d)
	}
	return c.p.o().SendTimeout
}

// errStaleConn fails the first write to a connection the app has closed.
var errStaleConn = errors.New("the app closed the idle connection")

func (c *deadlineConn) Read(b []byte) (int, error) {
	if t, ok := due(&c.readBy, c.readTimeout()); ok {
		if err := c.Conn.SetReadDeadline(t); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.afterRead.Store(true)
	}
	return n, err
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	if c.afterRead.Swap(false) {
		if closed, _ := c.peek.check(c.Conn); closed {
			return 0, errStaleConn
		}
	}
	return c.write(b)
}

// stale reports whether a pooled connection cannot carry a new request:
// the app closed it, or sent bytes nobody asked for, since the last answer
// was read from it. Only the first check (or Write) after a read looks.
func (c *deadlineConn) stale() bool {
	if !c.afterRead.Swap(false) {
		return false
	}
	closed, pending := c.peek.check(c.Conn)
	return closed || pending
}

// write writes b with the send timeout and restarts the read clock.
func (c *deadlineConn) write(b []byte) (int, error) {
	if t, ok := due(&c.writeBy, c.sendTimeout()); ok {
		if err := c.Conn.SetWriteDeadline(t); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Write(b)
	if n > 0 {
		if t, ok := due(&c.readBy, c.readTimeout()); ok {
			_ = c.Conn.SetReadDeadline(t)
		}
	}
	return n, err
}

// due returns the deadline to arm for an I/O that must progress within d,
// and false when the one armed (armed, updated here) already falls within
// slack after now+d: re-arming costs three clock reads and a timer update,
// and a request makes several reads and writes. So a timeout fires between
// d and d+slack after the last progress, never before, and a connection
// re-arms about once per slack, not once per read.
func due(armed *atomic.Int64, d time.Duration) (time.Time, bool) {
	slack := min(d/8, time.Second)
	now := time.Now()
	want := now.Add(d).UnixNano()
	if a := armed.Load(); a >= want && a <= want+int64(slack) {
		return time.Time{}, false
	}
	t := now.Add(d + slack)
	armed.Store(t.UnixNano())
	return t, true
}

// roundTripper is the ReverseProxy's Transport, for upgrades: p.roundTrip
// with the 1xx answers going to the context's trace, where ReverseProxy
// puts its forwarder.
type roundTripper struct{ p *Proxy }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	return rt.p.roundTrip(req, got1xxOf(req))
}

// got1xxOf returns the Got1xxResponse hook of req's client trace, if any.
func got1xxOf(req *http.Request) func(int, textproto.MIMEHeader) error {
	if t := httptrace.ContextClientTrace(req.Context()); t != nil {
		return t.Got1xxResponse
	}
	return nil
}

// roundTrip sends req to the app through p.upstream, retries once a
// request the app never answered, and times it. Informational answers but
// 100 Continue go to got1xx, when not nil.
func (p *Proxy) roundTrip(req *http.Request, got1xx func(int, textproto.MIMEHeader) error) (*http.Response, error) {
	start := time.Now()
	res, answered, err := p.roundTripOnce(req, got1xx)
	if err != nil && !answered && isDialError(err) {
		res, answered, err = p.failover(req, err, got1xx)
	}
	if err != nil && !answered && p.shouldRetry(req, err) {
		res, err = p.retry(req, err, got1xx)
	}
	d := time.Since(start)
	if t := timingFrom(req.Context()); t != nil {
		t.wait.Store(int64(d))
	}
	if err == nil {
		p.m.headDuration.Update(d.Seconds())
	}
	return res, err
}

// roundTripOnce sends req once (the upstream client itself may send it
// again on a fresh connection when a pooled one had gone stale) and
// reports whether any byte of an answer came back.
func (p *Proxy) roundTripOnce(req *http.Request, got1xx func(int, textproto.MIMEHeader) error) (res *http.Response, answered bool, err error) {
	return p.upstream.roundTrip(req, got1xx)
}

// shouldRetry reports whether req, which failed with err before any
// answer, may be sent once more: an idempotent request (isIdempotent: the
// method, or an idempotency key) whose connection died, or (with AwaitReady) any request the app refused, provided its
// body can be replayed.
func (p *Proxy) shouldRetry(req *http.Request, err error) bool {
	if req.Context().Err() != nil {
		return false
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch kindOf(err) {
	case kindReset:
		return isIdempotent(req)
	case kindConnect:
		return p.o().AwaitReady != nil
	}
	return false
}

// resend returns a copy of req to send again, with its body had afresh
// through GetBody; false when the body cannot be had again.
func resend(req *http.Request) (*http.Request, bool) {
	again := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return nil, false
		}
		body, err := req.GetBody()
		if err != nil {
			return nil, false
		}
		again.Body = body
	}
	return again, true
}

// maxRefusedRetries bounds the attempts at an app that refuses connections
// while it restarts; each attempt first waits for AwaitReady.
const maxRefusedRetries = 5

// refusedPause separates two attempts at an app that refused: the
// supervisor may not have seen the crash yet, and then reports ready.
const refusedPause = 100 * time.Millisecond

// retry waits for the app (AwaitReady) and sends req again on a fresh body.
// An attempt the app refuses sent nothing, so with AwaitReady it is tried
// again, a few times, after a short pause: right after a crash the
// supervisor may still report the dead app as ready. For the same reason a
// request whose connection died goes back to the same address only after
// that pause: sent at once, it would reach the dying app, and a request
// that may reach the app twice has no third try. On any failure before the
// second attempt it returns the first error.
func (p *Proxy) retry(req *http.Request, first error, got1xx func(int, textproto.MIMEHeader) error) (*http.Response, error) {
	p.m.retries.Inc()
	var res *http.Response
	err := first
	backToDying := kindOf(first) == kindReset && p.targets.Load().retryHost(req.URL.Host) == req.URL.Host
	for attempt := 0; attempt < maxRefusedRetries; attempt++ {
		if p.o().AwaitReady != nil {
			if attempt > 0 || backToDying {
				select {
				case <-req.Context().Done():
					return nil, err
				case <-time.After(refusedPause):
				}
			}
			if werr := p.o().AwaitReady(req.Context()); werr != nil {
				return nil, err
			}
		}
		again, ok := resend(req)
		if !ok {
			return nil, err
		}
		again.URL.Host = p.targets.Load().retryHost(req.URL.Host)
		p.log.Debug("retrying request the app never answered", "method", req.Method, "path", req.URL.Path, "err", err, "attempt", attempt+1)
		res, _, err = p.roundTripOnce(again, got1xx)
		if err == nil || p.o().AwaitReady == nil || kindOf(err) != kindConnect {
			return res, err
		}
	}
	return res, err
}
