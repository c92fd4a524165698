package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
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
// it can have reached the app is sent once more on a fresh connection, as
// net/http does: the app closing an idle connection is no failure.
func (u *upstream) roundTrip(req *http.Request, got1xx func(int, textproto.MIMEHeader) error) (*http.Response, bool, error) {
	f, err := u.framingFor(req)
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
// reused connection, or false when it may have reached the app: something
// was sent and it is not idempotent, or an answer began, or its body
// cannot be had again.
func replayable(req *http.Request, r tripResult) (*http.Request, bool) {
	if r.untouched {
		return req, true // nothing sent, nothing of the body read
	}
	if r.answered {
		return nil, false
	}
	if !r.nothingSent {
		if !errors.Is(r.err, io.EOF) && !isReset(r.err) {
			return nil, false
		}
		if !isIdempotent(req) {
			return nil, false
		}
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

// isReset reports whether err is the app resetting the connection.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

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

// upConn is one connection to the app.
type upConn struct {
	u      *upstream
	key    string
	c      *deadlineConn
	br     *bufio.Reader
	bw     *bufio.Writer // writes through connWriter
	head   []byte        // scratch for reading response heads, kept between requests
	idleAt time.Time     // when it was pooled; guarded by u.mu
	reused bool          // it served a request before this one
	abort  func()        // closes the socket: context.AfterFunc's callback

	// The request's cancellation closes the socket (abort), but it is
	// watched only once an exchange has lasted cancelDelay: registering
	// context.AfterFunc for every request cost about 2 % of CPU, and most
	// exchanges end well before anyone cancels them (the front notices a
	// client gone after 100 ms).
	cancelWait *time.Timer // calls watchCancel after cancelDelay; owned by the exchange
	cancelMu   sync.Mutex
	cancelCtx  context.Context // the exchange's context while it runs
	cancelStop func() bool     // context.AfterFunc's stop, once registered

	// State of the exchange in progress.
	sent     atomic.Int32 // sendNothing, sendStarted or sendAbandoned
	body     atomic.Int32 // bodyNone, bodyWriting, bodySent or bodyFailed
	bodyErr  error        // why the body failed; set before body becomes bodyFailed
	gotHead  atomic.Bool  // the final response head arrived
	reqClose bool         // the request asked to close the connection afterwards
}

// Values of upConn.sent.
const (
	sendNothing   = iota // no byte of the request was written yet
	sendStarted          // a write began
	sendAbandoned        // the request was given up before any write: none may begin
)

// Values of upConn.body.
const (
	bodyNone      = iota // the request has no body; the head was flushed
	bodyWriting          // the body goroutine is sending it
	bodySent             // the body went out whole; the goroutine no longer touches the conn
	bodyFailed           // sending failed with bodyErr
	bodyHandedOff        // the answer ended first: the body goroutine pools or closes the conn
)

// errAbandoned fails a write to a request already given up.
var errAbandoned = errors.New("request abandoned before it was sent")

// connWriter is what the write buffer flushes into: the socket, after
// noting that something is being sent.
type connWriter struct{ pc *upConn }

func (w connWriter) Write(b []byte) (int, error) {
	s := &w.pc.sent
	if s.Load() != sendStarted && !s.CompareAndSwap(sendNothing, sendStarted) {
		return 0, errAbandoned
	}
	return w.pc.c.Write(b)
}

// tripResult is the outcome of one attempt at a request.
type tripResult struct {
	res      *http.Response
	err      error
	answered bool // a byte of an answer arrived
	// untouched: the attempt failed before any byte was sent or any byte
	// of the body was read, so the very same request can be sent again.
	untouched bool
	// nothingSent: no byte reached the app, but the body may have been
	// read (it must be had again from GetBody).
	nothingSent bool
}

// roundTrip sends req over pc and reads the answer head. The answer's
// Request is orig. On failure pc is closed; on success it belongs to the
// answer's body, which pools or closes it at its end.
func (pc *upConn) roundTrip(req, orig *http.Request, f *framing, got1xx func(int, textproto.MIMEHeader) error) tripResult {
	if pc.reused && pc.c.stale() {
		pc.close()
		return tripResult{err: errStaleConn, untouched: true, nothingSent: true}
	}
	ctx := req.Context()
	pc.watch(ctx)
	pc.sent.Store(sendNothing)
	pc.gotHead.Store(false)
	pc.reqClose = f.close || req.Close
	writeHead(pc.bw, req, f)
	if f.chunked {
		// A body of unknown length may be a slow upload: the app gets the
		// head now, as from net/http, not with the first piece of body.
		if err := pc.bw.Flush(); err != nil {
			pc.finish(false)
			stale := errors.Is(err, errStaleConn)
			return tripResult{err: failure(ctx, "sending the request to the app", err), untouched: stale, nothingSent: stale}
		}
	}
	if f.hasBody {
		pc.body.Store(bodyWriting)
		go pc.writeBody(pc.bw, req.Body, *f, req.Trailer)
	} else {
		pc.body.Store(bodyNone)
		if err := pc.bw.Flush(); err != nil {
			pc.finish(false)
			stale := errors.Is(err, errStaleConn)
			return tripResult{err: failure(ctx, "sending the request to the app", err), untouched: stale, nothingSent: stale}
		}
	}
	res, answered, err := pc.readResponse(orig, got1xx)
	if err != nil {
		err = failure(ctx, "reading the app's answer", err)
		if pc.body.Load() == bodyFailed && ctx.Err() == nil {
			err = pc.bodyErr // the cause: sending failed, and closed the connection
		}
		nothing := !answered && (pc.sent.CompareAndSwap(sendNothing, sendAbandoned) || errors.Is(err, errStaleConn))
		pc.finish(false)
		return tripResult{err: err, answered: answered, nothingSent: nothing}
	}
	if err := pc.attachBody(res, ctx); err != nil {
		pc.finish(false)
		return tripResult{err: err, answered: true}
	}
	return tripResult{res: res, answered: true}
}

// failure wraps err, or reports the request's cancellation when that is
// what broke the connection.
func failure(ctx context.Context, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		err = cerr
	}
	return fmt.Errorf("%s: %w", what, err)
}

// finish ends pc's exchange: the connection goes back to the pool when
// clean says the answer was read to its end, the request goes out whole,
// nobody asked to close it and the request was not cancelled; otherwise it
// is closed. An answer may end before its request body is sent: the body
// goroutine then decides, when it is done.
func (pc *upConn) finish(clean bool) {
	if !pc.unwatch() {
		clean = false // the cancellation closes, or closed, the socket
	}
	if clean && !pc.reqClose {
		switch pc.body.Load() {
		case bodyNone, bodySent:
			pc.u.put(pc)
			return
		case bodyWriting:
			if pc.body.CompareAndSwap(bodyWriting, bodyHandedOff) {
				return
			}
			if pc.body.Load() == bodySent {
				pc.u.put(pc)
				return
			}
		}
	}
	pc.close()
}

// cancelDelay is how long an exchange runs before its request's
// cancellation is watched.
const cancelDelay = 50 * time.Millisecond

// watch starts the exchange of ctx: its cancellation closes the socket once
// the exchange has lasted cancelDelay (at once, if it was cancelled by then).
// It does not ask ctx for its Done channel: a cancelCtx makes that channel
// on the first call, which would cost every request an allocation (and its
// cancel a close) for the few exchanges that outlast cancelDelay.
func (pc *upConn) watch(ctx context.Context) {
	pc.cancelMu.Lock()
	pc.cancelCtx = ctx
	pc.cancelMu.Unlock()
	if pc.cancelWait == nil {
		pc.cancelWait = time.AfterFunc(cancelDelay, pc.watchCancel)
	} else {
		pc.cancelWait.Reset(cancelDelay)
	}
}

// watchCancel registers the abort on the running exchange's context.
func (pc *upConn) watchCancel() {
	pc.cancelMu.Lock()
	if pc.cancelCtx != nil && pc.cancelStop == nil {
		pc.cancelStop = context.AfterFunc(pc.cancelCtx, pc.abort)
	}
	pc.cancelMu.Unlock()
}

// unwatch ends the exchange's watch. It reports false when the
// cancellation closes, or closed, the socket.
func (pc *upConn) unwatch() bool {
	if pc.cancelWait != nil {
		pc.cancelWait.Stop()
	}
	pc.cancelMu.Lock()
	stop := pc.cancelStop
	pc.cancelCtx, pc.cancelStop = nil, nil
	pc.cancelMu.Unlock()
	return stop == nil || stop()
}

// close closes the connection and gives its buffers back, unless the body
// goroutine may still be using the write buffer.
func (pc *upConn) close() {
	pc.c.Close()
	if pc.br != nil {
		pc.br.Reset(nil)
		pc.u.readers.Put(pc.br)
		pc.br = nil
	}
	if pc.bw != nil {
		if pc.body.Load() != bodyWriting {
			pc.bw.Reset(nil)
			pc.u.writers.Put(pc.bw)
		}
		pc.bw = nil
	}
}

// framing is how a request goes out, worked out once for all attempts.
type framing struct {
	host       string // Host header; "" when the request's is not valid
	hasBody    bool
	chunked    bool   // Transfer-Encoding: chunked
	sendLength bool   // send Content-Length: length
	length     int64  // the body's length; -1 if unknown
	close      bool   // send Connection: close
	trailer    string // value of the Trailer header, or ""
}

// framingFor checks req and works out its framing, as net/http would
// send it.
func (u *upstream) framingFor(req *http.Request) (framing, error) {
	var f framing
	if req.URL == nil || req.URL.Scheme != "http" || req.URL.Host == "" {
		return f, fmt.Errorf("request URL %q: want http://host/", req.URL)
	}
	if !validMethod(req.Method) {
		return f, fmt.Errorf("invalid request method %q", req.Method)
	}
	f.hasBody = req.Body != nil && req.Body != http.NoBody
	if req.ContentLength != 0 && req.Body == nil {
		return f, fmt.Errorf("request ContentLength %d with no body", req.ContentLength)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	host, err := httpguts.PunycodeHostPort(host)
	if err != nil || !httpguts.ValidHostHeader(host) {
		host = "" // as net/http: an invalid Host is not sent
	}
	f.host = removeZone(host)
	switch {
	case !f.hasBody:
		f.length = 0
	case req.ContentLength > 0 && !(len(req.TransferEncoding) > 0 && req.TransferEncoding[0] == "chunked"):
		f.length = req.ContentLength
	default:
		f.length = -1
		f.chunked = true
	}
	method := req.Method
	f.sendLength = f.length > 0 || (f.length == 0 && (method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch))
	hasClose := httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close")
	f.close = !hasClose && (req.Close || (u.maxIdle.Load() <= 0 && !isUpgrade(req.Header)))
	if f.chunked && len(req.Trailer) > 0 {
		keys := make([]string, 0, len(req.Trailer))
		for k := range req.Trailer {
			k = http.CanonicalHeaderKey(k)
			switch k {
			case "Transfer-Encoding", "Trailer", "Content-Length":
				return f, fmt.Errorf("invalid request trailer key %q", k)
			}
			keys = append(keys, k)
		}
		slices.Sort(keys)
		f.trailer = strings.Join(keys, ",")
	}
	return f, nil
}

// isUpgrade reports whether h asks to switch protocols (a WebSocket).
func isUpgrade(h http.Header) bool {
	return len(h["Upgrade"]) > 0 && h["Upgrade"][0] != "" && httpguts.HeaderValuesContainsToken(h["Connection"], "upgrade")
}

func validMethod(m string) bool {
	if m == "" {
		return true // GET
	}
	for i := 0; i < len(m); i++ {
		if !tokenByte[m[i]] {
			return false
		}
	}
	return true
}

// removeZone removes an IPv6 zone from host, as net/http does.
func removeZone(host string) string {
	if !strings.HasPrefix(host, "[") {
		return host
	}
	i := strings.LastIndex(host, "]")
	if i < 0 {
		return host
	}
	j := strings.LastIndex(host[:i], "%")
	if j < 0 {
		return host
	}
	return host[:j] + host[i:]
}

// writeHead writes req's request line and header to bw, as
// http.Request.Write does, without the Go User-Agent: a request without
// one (or with an empty one) is sent without. Errors stay in bw.
func writeHead(bw *bufio.Writer, req *http.Request, f *framing) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	writeRequestURI(bw, req)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(f.host)
	bw.WriteString("\r\n")
	if ua := req.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" {
		writeField(bw, "User-Agent", ua[0])
	}
	if f.close {
		bw.WriteString("Connection: close\r\n")
	}
	if f.sendLength {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), f.length, 10))
		bw.WriteString("\r\n")
	} else if f.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if f.trailer != "" {
		writeField(bw, "Trailer", f.trailer)
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			continue // as net/http: dropped, not sent
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	bw.WriteString("\r\n")
}

// writeRequestURI writes req.URL.RequestURI() without building it; a
// control byte in it is replaced so it cannot split the request line.
func writeRequestURI(bw *bufio.Writer, req *http.Request) {
	u := req.URL
	if u.Opaque != "" {
		writeNoCTL(bw, u.RequestURI())
		return
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	writeNoCTL(bw, p)
	if u.ForceQuery || u.RawQuery != "" {
		bw.WriteByte('?')
		writeNoCTL(bw, u.RawQuery)
	}
}

// writeNoCTL writes s with any control byte escaped (net/http refuses the
// request instead; a client can't get one past the server anyway).
func writeNoCTL(bw *bufio.Writer, s string) {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' || b == 0x7f {
			bw.WriteString(s[:i])
			for ; i < len(s); i++ {
				if b := s[i]; b < ' ' || b == 0x7f {
					bw.WriteString("%" + strconv.FormatUint(uint64(b)|0x100, 16)[1:])
				} else {
					bw.WriteByte(b)
				}
			}
			return
		}
	}
	bw.WriteString(s)
}

// writeField writes one header line, with line breaks in v turned into
// spaces and v trimmed, as http.Header.Write does.
func writeField(bw *bufio.Writer, k, v string) {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	v = strings.Trim(v, " \t\r\n")
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// writeBody sends the request body after the head already in the write
// buffer, on its own goroutine, so the answer can be read meanwhile. It
// publishes the outcome in pc.body and, on a failure before any answer,
// closes the socket so the reader stops waiting. When the answer ended
// first (bodyHandedOff), the connection is its own to pool or close. It
// uses bw, not pc.bw, which the reader may clear on its way out. It always
// closes body.
func (pc *upConn) writeBody(bw *bufio.Writer, body io.ReadCloser, f framing, trailer http.Header) {
	defer body.Close()
	err := pc.copyBody(bw, body, &f, trailer)
	if err == nil {
		if !pc.body.CompareAndSwap(bodyWriting, bodySent) { // handed off
			pc.body.Store(bodySent)
			pc.u.put(pc)
		}
		return // pc is not touched after bodySent
	}
	pc.bodyErr = err
	if !pc.body.CompareAndSwap(bodyWriting, bodyFailed) { // handed off
		pc.body.Store(bodyFailed)
		pc.close()
		return
	}
	if !pc.gotHead.Load() {
		pc.c.Conn.Close()
	}
}

// copyBody writes body, framed as f says, and flushes after each piece it
// read, so a slow upload reaches the app (and restarts the read clock) as
// it comes.
func (pc *upConn) copyBody(bw *bufio.Writer, body io.Reader, f *framing, trailer http.Header) error {
	buf := pc.u.copyBufs.Get()
	defer pc.u.copyBufs.Put(buf)
	left := f.length
	for {
		p := buf
		if !f.chunked && int64(len(p)) > left {
			p = p[:left]
		}
		n, rerr := body.Read(p)
		if n > 0 {
			if f.chunked {
				bw.Write(strconv.AppendUint(bw.AvailableBuffer(), uint64(n), 16))
				bw.WriteString("\r\n")
				bw.Write(p[:n])
				bw.WriteString("\r\n")
			} else {
				bw.Write(p[:n])
				left -= int64(n)
			}
			if err := bw.Flush(); err != nil {
				return fmt.Errorf("sending the request body to the app: %w", err)
			}
		}
		if !f.chunked && left == 0 {
			return nil
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr // the client's failure, or MaxBody: bodyReader says which
		}
	}
	if !f.chunked {
		return fmt.Errorf("request body ended %d bytes short of its Content-Length %d: %w", left, f.length, io.ErrUnexpectedEOF)
	}
	bw.WriteString("0\r\n")
	if len(trailer) > 0 {
		for k, vv := range trailer {
			if !httpguts.ValidHeaderFieldName(k) {
				continue
			}
			for _, v := range vv {
				writeField(bw, k, v)
			}
		}
	}
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("sending the request body to the app: %w", err)
	}
	return nil
}
