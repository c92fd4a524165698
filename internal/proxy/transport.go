package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// newTransport returns the Proxy's own Transport: HTTP/1.1 only, no
// compression, no proxy from the environment, dialing through p.dial.
func (p *Proxy) newTransport() *http.Transport {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	t := &http.Transport{
		Proxy:                  nil,
		DialContext:            p.dial,
		Protocols:              &protocols,
		TLSNextProto:           map[string]func(string, *tls.Conn) http.RoundTripper{},
		DisableCompression:     true,
		MaxIdleConns:           max(p.o().KeepAlive, 0),
		MaxIdleConnsPerHost:    max(p.o().KeepAlive, 0),
		DisableKeepAlives:      p.o().KeepAlive < 0,
		IdleConnTimeout:        p.o().IdleConnTimeout,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
	}
	return t
}

// dial connects to the app and wraps the connection so every read and
// write carries its own deadline.
func (p *Proxy) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	network, address, err := targetForDial(addr)
	if err != nil {
		return nil, &dialError{err: err}
	}
	d := net.Dialer{Timeout: p.o().ConnectTimeout}
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, &dialError{err: err}
	}
	return &deadlineConn{Conn: c, p: p}, nil
}

// dialError marks a failure to connect to the app.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connecting to the app: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// deadlineConn gives nginx's meaning to the send and read timeouts: each
// Write must progress within send and each Read within read, however long
// the whole exchange takes. A write also restarts the read clock, so time
// spent sending the request does not count against waiting for the answer,
// and a connection idle in the pool (where the Transport keeps a Read
// pending) starts afresh when a request is written to it.
//
// It also closes most of the keep-alive race: when the app closed a pooled
// connection just before a request is written to it, the first write after
// a read finds the close already queued and fails without sending a byte,
// so the Transport replays the request on a fresh connection (for a body,
// only when GetBody is set, as the spool does). Only a close still in
// flight on the wire can then make a request fail.
type deadlineConn struct {
	net.Conn
	p *Proxy // its options hold the send and read timeouts in force
	// afterRead is set by a Read that got data and cleared by the next
	// Write: that Write is the start of a new request on a reused
	// connection. Atomic: the Transport reads and writes from two goroutines.
	afterRead atomic.Bool
}

// errStaleConn fails the first write to a connection the app has closed.
var errStaleConn = errors.New("the app closed the idle connection")

func (c *deadlineConn) Read(b []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.p.o().ReadTimeout)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.afterRead.Store(true)
	}
	return n, err
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	if c.afterRead.Swap(false) && peerClosed(c.Conn) {
		return 0, errStaleConn
	}
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.p.o().SendTimeout)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(b)
	if n > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.p.o().ReadTimeout))
	}
	return n, err
}

// roundTripper is the ReverseProxy's Transport: p.transport plus the one
// retry of a request the app never answered, and timing.
type roundTripper struct{ p *Proxy }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	p := rt.p
	start := time.Now()
	res, answered, err := p.roundTripOnce(req)
	if err != nil && !answered && p.shouldRetry(req, err) {
		res, err = p.retry(req, err)
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

// roundTripOnce sends req once and reports whether any byte of an answer
// came back.
func (p *Proxy) roundTripOnce(req *http.Request) (res *http.Response, answered bool, err error) {
	var got atomic.Bool
	trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { got.Store(true) }}
	res, err = p.transport.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	return res, got.Load(), err
}

// shouldRetry reports whether req, which failed with err before any
// answer, may be sent once more: an idempotent request whose connection
// died, or (with AwaitReady) any request the app refused, provided its
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
		switch req.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
			return true
		}
	case kindConnect:
		return p.o().AwaitReady != nil
	}
	return false
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
// supervisor may still report the dead app as ready. On any failure before
// the second attempt it returns the first error.
func (p *Proxy) retry(req *http.Request, first error) (*http.Response, error) {
	p.m.retries.Inc()
	var res *http.Response
	err := first
	for attempt := 0; attempt < maxRefusedRetries; attempt++ {
		if p.o().AwaitReady != nil {
			if attempt > 0 {
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
		again := req.Clone(req.Context())
		if req.Body != nil && req.Body != http.NoBody {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			again.Body = body
		}
		p.log.Debug("retrying request the app never answered", "method", req.Method, "path", req.URL.Path, "err", err, "attempt", attempt+1)
		res, _, err = p.roundTripOnce(again)
		if err == nil || p.o().AwaitReady == nil || kindOf(err) != kindConnect {
			return res, err
		}
	}
	return res, err
}
