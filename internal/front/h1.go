package front

import (
	"bufio"
	"bulwark/internal/h1"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// aLongTimeAgo is a deadline in the past, used to wake a blocked Read.
var aLongTimeAgo = time.Unix(1, 0)

// maxDrainBytes is how much of an unread request body is read and discarded
// after the handler returns so that the connection can be reused; a larger
// remainder closes the connection instead (net/http uses the same bound).
const maxDrainBytes = 256 << 10

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writerSize) }}
	// recordWriterPool holds writers as large as a TLS record, taken for
	// an answer whose whole body comes in one Write (a small static file,
	// a buffered app answer): its head and body then leave in one record
	// and one write(2), as nginx sends them, instead of two.
	recordWriterPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, recordSize) }}
)

const (
	writerSize = 4096
	recordSize = 16 << 10 // TLS's largest record payload
	// recordBodyMin and recordBodyMax bound the bodies that take a
	// record-sized writer: below, head and body fit the small one; above,
	// they cannot share a record anyway (room is left for the head).
	recordBodyMin = writerSize / 2
	recordBodyMax = recordSize - 2048
)

// h1Conn is one HTTP/1.1 client connection. It is owned by its serve
// goroutine, except for the fields documented otherwise.
type h1Conn struct {
	srv      *Server
	rwc      net.Conn
	tlsState *tls.ConnectionState
	remote   string

	cr connReader
	br *bufio.Reader // nil while idle with nothing buffered
	bw *bufio.Writer // nil outside a response

	idle     atomic.Bool // waiting for the next request; Shutdown may wake it
	hijacked bool
	// linger: the connection closes after an early answer while the client
	// may still be sending the request, so close lingers (h1_linger.go).
	linger bool
	werr   bool // a write to the client failed: nothing more reaches it

	// headDeadline is when the request head now arriving must be complete:
	// set once when its wait starts (a new connection) or when its first
	// byte came (keep-alive), and never pushed back by later reads, so a
	// client trickling bytes gets ReadHeaderTimeout in all (slowloris).
	// Zero means from when serveOne starts reading it (a pipelined head).
	headDeadline time.Time

	// watch runs watchClient clientGoneDelay into a request. It is kept
	// while the connection is busy (a timer per request cost 2 % of the CPU
	// under load) and dropped when it goes quiet.
	watch    *time.Timer
	watching atomic.Pointer[requestBody] // the request watch is for, or nil

	// resp is the last request's response and header map, cleared and
	// reused by the next while the connection is busy (two allocations a
	// request otherwise), dropped with watch when it goes quiet.
	resp *response
}

// watchClient starts noticing a client that went away during a request
// that is taking long. A late timer may find the next request (which then
// is watched early, harmlessly) or none.
func (c *h1Conn) watchClient() {
	if b := c.watching.Load(); b != nil {
		b.watchClient()
	}
}

// dropWatch stops and drops the request timer, so an idle connection does
// not hold it.
func (c *h1Conn) dropWatch() {
	if c.watch != nil {
		c.watch.Stop()
		c.watch = nil
	}
	c.resp = nil
}

// newResponse returns the response for req, reusing the previous request's
// struct and header map when the connection kept them.
func (c *h1Conn) newResponse(req *http.Request, body *requestBody) *response {
	w := c.resp
	c.resp = nil
	if w == nil {
		return &response{c: c, req: req, body: body, header: make(http.Header, 8)}
	}
	h := w.header
	clear(h)
	*w = response{c: c, req: req, body: body, header: h}
	return w
}

// serveH1 serves HTTP/1.1 on c until the client or the server ends it.
func (s *Server) serveH1(rwc net.Conn, st *tls.ConnectionState) {
	c := &h1Conn{srv: s, rwc: rwc, tlsState: st, remote: rwc.RemoteAddr().String()}
	c.cr.c = c
	s.track(c, true)
	s.m.h1Idle.Inc()
	c.idle.Store(true)
	c.serve(true)
}

// serve serves requests until the connection ends. The handler chain
// (proxy, transport, TLS writes) grows a goroutine's stack to several times
// its starting size, and an idle keep-alive connection must not keep that;
// growing a fresh stack for every request costs CPU, though. So a busy
// connection stays on its goroutine, and one that has been quiet for
// idleHandoff waits for its next request on a fresh goroutine, with a small
// stack, while this one exits.
func (c *h1Conn) serve(first bool) {
	for {
		if !c.waitForRequest(first) || !c.serveOne() {
			c.close()
			return
		}
		first = false
		switch c.waitBriefly() {
		case briefArrived:
		case briefQuiet:
			c.dropWatch()
			go c.serve(false)
			return
		case briefClosed:
			c.close()
			return
		}
	}
}

// idleHandoff is how long a connection waits for its next request on the
// goroutine that served the last one.
const idleHandoff = 250 * time.Millisecond

type briefResult int

const (
	briefArrived briefResult = iota // the next request began (or is buffered)
	briefQuiet                      // nothing within idleHandoff
	briefClosed                     // the client closed or the server is closing
)

// waitBriefly waits up to idleHandoff for the first byte of the next
// request, holding no buffer.
func (c *h1Conn) waitBriefly() briefResult {
	if c.br != nil || c.cr.hasByte {
		return briefArrived
	}
	if c.srv.closing.Load() {
		return briefQuiet // waitForRequest applies the shutdown grace
	}
	c.rwc.SetReadDeadline(time.Now().Add(min(idleHandoff, c.srv.o().IdleTimeout)))
	n, err := c.rwc.Read(c.cr.byteBuf[:])
	if n == 1 {
		c.cr.hasByte = true
		c.headDeadline = time.Now().Add(c.srv.o().ReadHeaderTimeout)
		return briefArrived
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return briefQuiet
	}
	return briefClosed
}

// close ends the connection and its accounting.
func (c *h1Conn) close() {
	c.dropWatch()
	c.releaseReader(true)
	if c.linger && !c.werr && !c.hijacked {
		// On a fresh goroutine: the handler chain grew this one's stack,
		// which would otherwise stay held for up to lingerTime.
		go func() {
			c.lingerClose()
			c.release()
		}()
		return
	}
	c.release()
}

// release ends the connection's accounting and closes it.
func (c *h1Conn) release() {
	s := c.srv
	if c.idle.Load() {
		s.m.h1Idle.Dec()
	} else {
		s.m.h1Active.Dec()
	}
	s.track(c, false)
	if !c.hijacked {
		c.rwc.Close()
	}
}

// waitForRequest blocks until the first byte of the next request arrives,
// holding no buffer meanwhile, and sets the head's deadline. It reports
// false when the connection should close. While the server shuts down, a
// request that is already on its way still gets served (with Connection:
// close) if it arrives within shutdownIdleGrace; closing at once would drop
// it, since a client cannot tell that close from a failure.
//
// A new connection's first head must be complete ReadHeaderTimeout after
// the wait began, first byte included, as nginx's client_header_timeout
// counts from the connection; a keep-alive connection waits IdleTimeout
// for the first byte and then has ReadHeaderTimeout for the rest.
func (c *h1Conn) waitForRequest(first bool) bool {
	if c.br != nil || c.cr.hasByte {
		return true // a pipelined request is already here
	}
	now := time.Now()
	timeout := c.srv.o().IdleTimeout
	if first {
		timeout = c.srv.o().ReadHeaderTimeout
		c.headDeadline = now.Add(timeout)
	}
	if c.srv.closing.Load() {
		timeout = min(timeout, shutdownIdleGrace)
	}
	c.rwc.SetReadDeadline(now.Add(timeout))
	if c.srv.closing.Load() {
		// Shutdown may have woken us between the check and the deadline.
		c.rwc.SetReadDeadline(time.Now().Add(min(timeout, shutdownIdleGrace)))
	}
	n, _ := c.rwc.Read(c.cr.byteBuf[:])
	if n == 0 {
		return false
	}
	c.cr.hasByte = true
	if !first {
		c.headDeadline = time.Now().Add(c.srv.o().ReadHeaderTimeout)
	}
	return true
}

// reasonHeaderTimeout counts, in bulwark_rejected_total, the connections
// closed because a request head did not arrive within ReadHeaderTimeout.
const reasonHeaderTimeout = "read_header_timeout"

// shutdownIdleGrace is how long an idle connection is still read from once
// the server shuts down.
const shutdownIdleGrace = 250 * time.Millisecond

// wakeIfIdle shortens an idle connection's wait so that it sees the server
// is closing. Called by Shutdown with s.mu held.
func (c *h1Conn) wakeIfIdle() {
	if c.idle.Load() {
		c.rwc.SetReadDeadline(time.Now().Add(shutdownIdleGrace))
	}
}

func (c *h1Conn) setActive(active bool) {
	if c.idle.Swap(!active) == !active {
		return
	}
	if active {
		c.srv.m.h1Idle.Dec()
		c.srv.m.h1Active.Inc()
	} else {
		c.srv.m.h1Active.Dec()
		c.srv.m.h1Idle.Inc()
	}
}

// serveOne reads one request, runs the handler, and finishes the answer.
// It reports whether the connection may carry another request.
func (c *h1Conn) serveOne() (keep bool) {
	c.setActive(true)
	defer c.setActive(false)
	if c.br == nil {
		c.br = readerPool.Get().(*bufio.Reader)
		c.br.Reset(&c.cr)
	}
	dl := c.headDeadline
	if dl.IsZero() {
		dl = time.Now().Add(c.srv.o().ReadHeaderTimeout)
	}
	c.headDeadline = time.Time{}
	c.rwc.SetReadDeadline(dl)
	ctx, cancel := c.srv.requestContext()
	defer cancel()
	req, err := c.readRequest(ctx)
	if err != nil {
		c.answerBadRequest(err)
		return false
	}
	c.rwc.SetReadDeadline(time.Time{})
	c.cr.cancel = cancel
	body := req.Body.(*requestBody)
	w := c.newResponse(req, body)
	if c.tlsState != nil {
		w.hsts = c.srv.hsts()
	}
	// Most answers come quickly; only a request still running after
	// clientGoneDelay gets a background read to notice a client that left.
	c.watching.Store(body)
	if c.watch == nil {
		c.watch = time.AfterFunc(clientGoneDelay, c.watchClient)
	} else {
		c.watch.Reset(clientGoneDelay)
	}
	handled := c.runHandler(w, req)
	c.watch.Stop()
	c.watching.Store(nil)
	body.handlerDone()
	if !handled || c.hijacked {
		return false
	}
	c.cr.abortPendingRead()
	c.cr.cancel = nil
	w.finish()
	keep = !w.closeAfter && !c.srv.closing.Load() && !c.cr.sawEOF
	if keep {
		keep = body.drain()
	} else {
		body.close()
	}
	if !keep && !c.cr.sawEOF {
		// An answer before the end of the body (413, 429, 503...), or
		// with the next request already coming: the client is still
		// sending.
		c.linger = body.unfinished() || c.cr.hasByte || c.br.Buffered() > 0
	}
	c.releaseWriter()
	if keep && c.br.Buffered() == 0 {
		c.releaseReader(false)
	}
	if keep {
		c.resp = w // the handler is done with it: the next request reuses it
	}
	return keep
}

// runHandler calls the handler, turning a panic into a closed connection
// (and a 500 when nothing was sent yet). It reports false when the
// connection must close without finishing the answer.
func (c *h1Conn) runHandler(w *response, req *http.Request) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			c.cr.abortPendingRead()
			if p != http.ErrAbortHandler {
				c.srv.o().Logger.Error("panic serving request", "client", c.remote,
					"method", req.Method, "path", req.URL.Path, "panic", p, "stack", string(debug.Stack()))
				if !w.committed && !c.hijacked {
					w.header = http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
					w.status = 0
					w.wroteHeader = false
					w.closeAfter = true
					w.WriteHeader(http.StatusInternalServerError)
					io.WriteString(w, "500 Internal Server Error (bulwark)\n")
					w.finish()
				}
			} else if !c.hijacked {
				w.flushQuiet()
			}
			ok = false
		}
	}()
	c.srv.o().Handler.ServeHTTP(w, req)
	return true
}

func (c *h1Conn) releaseReader(force bool) {
	if c.br == nil {
		return
	}
	if !force && c.br.Buffered() > 0 {
		return
	}
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.br = nil
}

func (c *h1Conn) writer() *bufio.Writer {
	if c.bw == nil {
		c.bw = writerPool.Get().(*bufio.Writer)
		c.bw.Reset(deadlineWriter{c})
	}
	return c.bw
}

// writerFor is writer for an answer whose head is followed at once by a
// body of n bytes: when they can share a TLS record, the writer holds it.
func (c *h1Conn) writerFor(n int) *bufio.Writer {
	if c.bw == nil && n >= recordBodyMin && n <= recordBodyMax {
		c.bw = recordWriterPool.Get().(*bufio.Writer)
		c.bw.Reset(deadlineWriter{c})
	}
	return c.writer()
}

func (c *h1Conn) releaseWriter() {
	if c.bw == nil {
		return
	}
	c.bw.Reset(nil)
	if c.bw.Size() == recordSize {
		recordWriterPool.Put(c.bw)
	} else {
		writerPool.Put(c.bw)
	}
	c.bw = nil
}

// answerBadRequest writes the status for a request that could not be read
// and leaves the connection to be closed. Client disconnects and timeouts
// get no answer.
func (c *h1Conn) answerBadRequest(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		// A head begun but not finished within ReadHeaderTimeout: the
		// connection is closed without an answer (a slowloris).
		c.srv.m.rejected(reasonHeaderTimeout).Inc()
		return
	}
	var he *headError
	if !errors.As(err, &he) {
		return
	}
	c.srv.m.refused(he.status, he.reason).Inc()
	body := he.msg + " (bulwark)\n"
	bw := c.writer()
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(h1.StatusLine(he.status))
	bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nX-Bulwark-Error: ")
	bw.WriteString(he.reason)
	bw.WriteString("\r\nContent-Length: ")
	bw.WriteString(itoa(len(body)))
	bw.WriteString("\r\n\r\n")
	bw.WriteString(body)
	bw.Flush()
	c.releaseWriter()
	// The rest of the request (a head over the limit, a body) may still
	// be coming.
	c.linger = true
}

// deadlineWriter writes to the connection with WriteTimeout as the bound on
// each write (nginx's send_timeout: the gap between two writes).
type deadlineWriter struct{ c *h1Conn }

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.c.rwc.SetWriteDeadline(time.Now().Add(d.c.srv.o().WriteTimeout))
	n, err := d.c.rwc.Write(p)
	if err != nil {
		d.c.werr = true
	}
	return n, err
}

// connReader is the io.Reader under the connection's bufio.Reader. It first
// returns the byte read while the connection was idle, and it can run one
// background read while a handler works, to notice a client that went away
// (as net/http does) without losing a pipelined byte.
type connReader struct {
	c       *h1Conn
	byteBuf [1]byte
	hasByte bool // byteBuf holds a byte not yet returned

	mu     sync.Mutex
	inRead bool
	cond   *sync.Cond
	sawEOF bool               // the background read saw the client go away
	cancel context.CancelFunc // cancels the request in progress; set by serveOne
}

func (cr *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	cr.mu.Lock()
	if cr.inRead {
		cr.mu.Unlock()
		return 0, errors.New("concurrent read on connection")
	}
	if cr.hasByte {
		p[0] = cr.byteBuf[0]
		cr.hasByte = false
		cr.mu.Unlock()
		return 1, nil
	}
	if cr.sawEOF {
		cr.mu.Unlock()
		return 0, io.EOF
	}
	cr.mu.Unlock()
	return cr.c.rwc.Read(p)
}

// clientGoneDelay is how long a request runs before a background read
// watches for its client going away. Starting one for every request cost
// about 4 % of CPU under load (a goroutine, a read and an aborted deadline),
// for answers that come in a few milliseconds anyway.
const clientGoneDelay = 100 * time.Millisecond

// startBackgroundRead begins a one-byte read that ends the request's context
// if the client closes the connection while the handler runs. It is started
// only once the request body has been read to its end.
func (cr *connReader) startBackgroundRead() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.inRead || cr.hasByte || cr.sawEOF || cr.c.br == nil || cr.c.br.Buffered() > 0 {
		return
	}
	if cr.cond == nil {
		cr.cond = sync.NewCond(&cr.mu)
	}
	cr.inRead = true
	cr.c.rwc.SetReadDeadline(time.Time{})
	go cr.backgroundRead()
}

func (cr *connReader) backgroundRead() {
	n, err := cr.c.rwc.Read(cr.byteBuf[:])
	cr.mu.Lock()
	if n == 1 {
		cr.hasByte = true // a pipelined request began
	}
	var ne net.Error
	if err != nil && n == 0 && !(errors.As(err, &ne) && ne.Timeout()) {
		// The client went away (or the connection broke): the handler
		// should stop waiting for the app on its behalf.
		cr.sawEOF = true
		if cr.cancel != nil {
			cr.cancel()
		}
	}
	cr.inRead = false
	cr.cond.Broadcast()
	cr.mu.Unlock()
}

// abortPendingRead stops a background read and waits for it to return.
func (cr *connReader) abortPendingRead() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if !cr.inRead {
		return
	}
	cr.c.rwc.SetReadDeadline(aLongTimeAgo)
	for cr.inRead {
		cr.cond.Wait()
	}
	cr.c.rwc.SetReadDeadline(time.Time{})
}
