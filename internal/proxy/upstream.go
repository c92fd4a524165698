package proxy

import (
	"bufio"
	"bulwark/internal/h1"
	"context"
	"net/http"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"
)

// upstream is the Proxy's HTTP/1.1 client to the app, in place of
// net/http.Transport. A request is written and its answer read on the
// calling goroutine; only a request body is sent from a helper goroutine,
// so that the app can answer before it has read the whole body. There are
// no per-connection read or write loops: an idle pooled connection is a
// socket, its two buffers and an entry in a slice.
//
// Idle connections are kept per URL host (the target's urlHost, so two
// addresses are never mixed up), newest reused first, at most maxIdle of
// them per host; one timer closes those unused for idleTimeout.
type upstream struct {
	dial        func(ctx context.Context, addr string) (*deadlineConn, error)
	maxIdle     atomic.Int64  // idle connections kept per host; 0: none, a fresh connection per request
	idleTimeout time.Duration // an idle connection is closed after this long unused
	copyBufs    *bufferPool   // 32 KiB buffers request bodies are sent with
	readers     sync.Pool     // *bufio.Reader of upBufSize
	writers     sync.Pool     // *bufio.Writer of upBufSize

	mu       sync.Mutex
	idle     map[string][]*upConn // by URL host, oldest first
	sweeper  *time.Timer          // runs sweep; armed while sweeping is set
	sweeping bool
}

// upBufSize is the size of each connection's read and write buffer.
const upBufSize = 4 << 10

// maxInformational bounds the 1xx answers read before the final one.
const maxInformational = 32

// newUpstream returns a client that dials with dial and pools connections
// as keepAlive (negative: no pooling) and idleTimeout say.
func newUpstream(dial func(context.Context, string) (*deadlineConn, error), keepAlive int, idleTimeout time.Duration, bufs *bufferPool) *upstream {
	u := &upstream{
		dial:        dial,
		idleTimeout: idleTimeout,
		copyBufs:    bufs,
		idle:        make(map[string][]*upConn),
	}
	u.maxIdle.Store(int64(max(keepAlive, 0)))
	u.readers.New = func() any { return bufio.NewReaderSize(nil, upBufSize) }
	u.writers.New = func() any { return bufio.NewWriterSize(nil, upBufSize) }
	return u
}

var _ http.RoundTripper = (*upstream)(nil)

// RoundTrip sends req to the app and returns its answer, as an
// http.RoundTripper, for tests; 1xx answers go to the context's client
// trace.
func (u *upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	res, _, err := u.roundTrip(req, got1xxOf(req))
	return res, err
}

// setMaxIdle changes how many idle connections are kept per host (0 or
// less: none), closing the oldest ones beyond the new bound now.
func (u *upstream) setMaxIdle(n int) {
	n = max(n, 0)
	u.maxIdle.Store(int64(n))
	var drop []*upConn
	u.mu.Lock()
	for key, list := range u.idle {
		if extra := len(list) - n; extra > 0 {
			drop = append(drop, list[:extra]...)
			u.idle[key] = append(list[:0:0], list[extra:]...)
		}
	}
	u.mu.Unlock()
	for _, pc := range drop {
		pc.close()
	}
}

// CloseIdleConnections closes the connections now idle in the pool. Those
// in use are pooled again when their exchange ends, and closed after
// idleTimeout unless reused.
func (u *upstream) CloseIdleConnections() {
	u.mu.Lock()
	var all []*upConn
	for key, list := range u.idle {
		all = append(all, list...)
		delete(u.idle, key)
	}
	u.mu.Unlock()
	for _, pc := range all {
		pc.close()
	}
}

// roundTrip sends req and reports, besides the answer, whether any byte of
// an answer came back. A request that failed on a reused connection before
// it can have reached the app is sent once more on a fresh connection: the
// app closing an idle connection is no failure. Unlike net/http, one that
// may have reached it is not (Proxy.retry decides).
func (u *upstream) roundTrip(req *http.Request, got1xx func(int, textproto.MIMEHeader) error) (*http.Response, bool, error) {
	f, err := h1.NewRequestFraming(req, u.maxIdle.Load() > 0)
	if err != nil {
		closeRequestBody(req)
		return nil, false, err
	}
	out := req
	for attempt := 0; ; attempt++ {
		pc, err := u.get(req.Context(), req.URL.Host, attempt > 0)
		if err != nil {
			closeRequestBody(out)
			return nil, false, err
		}
		r := pc.roundTrip(out, req, &f, got1xx)
		if r.err == nil {
			return r.res, true, nil
		}
		if attempt > 0 || !pc.reused || req.Context().Err() != nil {
			if r.untouched {
				closeRequestBody(out)
			}
			return nil, r.answered, r.err
		}
		next, ok := replayable(out, r)
		if !ok {
			if r.untouched {
				closeRequestBody(out)
			}
			return nil, r.answered, r.err
		}
		out = next
	}
}

// replayable returns the request to send again after a failure r on a
// reused connection, or false when it may have reached the app (something
// was sent; an answer that began implies that) or its body cannot be had
// again.
func replayable(req *http.Request, r tripResult) (*http.Request, bool) {
	if r.untouched {
		return req, true // nothing sent, nothing of the body read
	}
	if !r.nothingSent {
		// The request may have reached the app, and its connection passed
		// the stale check: the app more likely died under it than closed
		// an idle connection. Proxy.retry sends an idempotent one once
		// more; sending it here too would make three tries, and a request
		// that kills its worker would take three workers down.
		return nil, false
	}
	if req.Body == nil || req.Body == http.NoBody {
		return req, true
	}
	if req.GetBody == nil {
		return nil, false
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, false
	}
	again := new(http.Request)
	*again = *req
	again.Body = body
	return again, true
}

// isIdempotent reports whether req may be sent twice, as net/http judges
// it: the idempotent methods, or a request carrying an idempotency key.
func isIdempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, k1 := req.Header["Idempotency-Key"]
	_, k2 := req.Header["X-Idempotency-Key"]
	return k1 || k2
}

func closeRequestBody(req *http.Request) {
	if req.Body != nil && req.Body != http.NoBody {
		req.Body.Close()
	}
}

// get returns an idle connection to key, newest first, or a new one; fresh
// forces a new one.
func (u *upstream) get(ctx context.Context, key string, fresh bool) (*upConn, error) {
	if !fresh && u.maxIdle.Load() > 0 {
		u.mu.Lock()
		if list := u.idle[key]; len(list) > 0 {
			pc := list[len(list)-1]
			list[len(list)-1] = nil
			u.idle[key] = list[:len(list)-1]
			u.mu.Unlock()
			pc.reused = true
			return pc, nil
		}
		u.mu.Unlock()
	}
	c, err := u.dial(ctx, key)
	if err != nil {
		return nil, err
	}
	pc := &upConn{u: u, key: key, c: c}
	pc.br = u.readers.Get().(*bufio.Reader)
	pc.br.Reset(c)
	pc.bw = u.writers.Get().(*bufio.Writer)
	pc.bw.Reset(connWriter{pc})
	pc.abort = func() { pc.c.Conn.Close() }
	return pc, nil
}

// put pools pc, or closes it when pooling is off or the app sent more than
// its answer. A full pool drops its oldest connection.
func (u *upstream) put(pc *upConn) {
	maxIdle := int(u.maxIdle.Load())
	if maxIdle <= 0 || pc.br.Buffered() > 0 { // bytes past the answer: nobody asked for them
		pc.close()
		return
	}
	var evicted *upConn
	u.mu.Lock()
	list := u.idle[pc.key]
	if len(list) >= maxIdle {
		evicted = list[0]
		n := copy(list, list[1:])
		list[n] = nil
		list = list[:n]
	}
	pc.idleAt = time.Now()
	pc.c.afterRead.Store(true) // the next request checks it first
	u.idle[pc.key] = append(list, pc)
	if !u.sweeping {
		u.sweeping = true
		if u.sweeper == nil {
			u.sweeper = time.AfterFunc(u.idleTimeout, u.sweep)
		} else {
			u.sweeper.Reset(u.idleTimeout)
		}
	}
	u.mu.Unlock()
	if evicted != nil {
		evicted.close()
	}
}

// sweep closes the connections idle for idleTimeout and arms the timer
// again for the oldest one left. Each host's list is oldest first, so the
// expired ones are a prefix of it.
func (u *upstream) sweep() {
	var expired []*upConn
	u.mu.Lock()
	now := time.Now()
	var oldest time.Time
	for key, list := range u.idle {
		i := 0
		for i < len(list) && now.Sub(list[i].idleAt) >= u.idleTimeout {
			i++
		}
		expired = append(expired, list[:i]...)
		n := copy(list, list[i:])
		clear(list[n:])
		list = list[:n]
		if n == 0 {
			delete(u.idle, key)
			continue
		}
		u.idle[key] = list
		if oldest.IsZero() || list[0].idleAt.Before(oldest) {
			oldest = list[0].idleAt
		}
	}
	if oldest.IsZero() {
		u.sweeping = false
	} else {
		u.sweeper.Reset(max(oldest.Add(u.idleTimeout).Sub(now), time.Millisecond))
	}
	u.mu.Unlock()
	for _, pc := range expired {
		pc.close()
	}
}

// idleCount returns the number of pooled connections to key.
func (u *upstream) idleCount(key string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.idle[key])
}
