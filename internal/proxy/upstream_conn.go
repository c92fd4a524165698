package proxy

import (
	"bufio"
	"bulwark/internal/h1"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"
)

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
func (pc *upConn) roundTrip(req, orig *http.Request, f *h1.RequestFraming, got1xx func(int, textproto.MIMEHeader) error) tripResult {
	if pc.reused && pc.c.stale() {
		pc.close()
		return tripResult{err: errStaleConn, untouched: true, nothingSent: true}
	}
	ctx := req.Context()
	pc.watch(ctx)
	pc.c.begin(req) // this request's timeouts ([[route]])
	pc.sent.Store(sendNothing)
	pc.gotHead.Store(false)
	pc.reqClose = f.Close || req.Close
	h1.WriteRequestHead(pc.bw, req, f)
	if f.Chunked {
		// A body of unknown length may be a slow upload: the app gets the
		// head now, as from net/http, not with the first piece of body.
		if err := pc.bw.Flush(); err != nil {
			pc.finish(false)
			stale := errors.Is(err, errStaleConn)
			return tripResult{err: failure(ctx, "sending the request to the app", err), untouched: stale, nothingSent: stale}
		}
	}
	if f.HasBody {
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
