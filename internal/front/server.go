// Package front is Bulwark's front door: it accepts client connections,
// completes TLS handshakes, and serves HTTP/1.1 and HTTP/2 with its own
// connection code, handing every request to one http.Handler.
//
// The HTTP/1.1 loop exists for memory and for safety. An idle keep-alive
// connection holds no read or write buffer (they come from pools only while
// a request is in progress), and the request head is read and checked as raw
// bytes before it is parsed, so smuggling attempts (Content-Length with
// Transfer-Encoding, differing Content-Lengths, obsolete line folding,
// unknown transfer codings) are refused with 400 and the connection closed.
// The wire rules themselves (head parsing, validation, framing, the chunked
// coding, head writing) are package h1's, shared with the proxy's client;
// this package keeps the connection, its buffers, deadlines and body
// readers.
//
// HTTP/2 is served by package h2, for the same reasons: an idle connection
// is one goroutine and its HPACK state, and a stream's handler writes its
// own frames, with no hand-off between goroutines. This package composes
// the listener, the TLS handshake, ALPN and the two kinds of connection.
//
// The package leaves everything after the request head to the handler:
// request limits, admission, spooling and proxying. Connection caps are
// the exception: they are checked at accept, before the TLS handshake, by
// the limit.Conns the caller passes. It does not know about certificate
// files either: callers pass a *tls.Config.
package front

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/time/rate"

	"bulwark/internal/h2"
	"bulwark/internal/limit"
)

// Defaults applied to zero Options fields.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 5 * time.Second
	DefaultMaxHeaderBytes    = 16 << 10
	DefaultBodyReadTimeout   = 60 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultHandshakeTimeout  = 10 * time.Second

	// DefaultMaxConcurrentStreams caps HTTP/2 streams per connection: enough
	// for a browser, small enough that one client cannot pin much memory.
	DefaultMaxConcurrentStreams = h2.DefaultMaxConcurrentStreams
)

// Options configures a Server. The zero value of each field is documented.
type Options struct {
	// Handler serves every request. Required.
	Handler http.Handler
	// TLSConfig, when non-nil, makes the server terminate TLS; its NextProtos
	// decide whether HTTP/2 is offered. Nil serves plain HTTP/1.1.
	TLSConfig *tls.Config
	// ReadHeaderTimeout bounds reading a request head (slowloris): one
	// deadline for the whole head, never extended by bytes that trickle in.
	// A new connection's first head must be complete this long after the
	// connection starts waiting for it; a keep-alive head, this long after
	// its first byte.
	// Zero means DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its next
	// request. Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake. Zero means ReadHeaderTimeout.
	HandshakeTimeout time.Duration
	// BodyReadTimeout bounds the gap between two reads of a request body
	// (nginx's client_body_timeout). Zero means DefaultBodyReadTimeout.
	BodyReadTimeout time.Duration
	// WriteTimeout bounds the gap between two writes to the client (nginx's
	// send_timeout). Zero means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// MaxHeaderBytes bounds the request head (request line and headers);
	// beyond it the answer is 431 (414 for the request line alone). Zero
	// means DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxConcurrentStreams caps HTTP/2 streams per connection. Zero means
	// DefaultMaxConcurrentStreams.
	MaxConcurrentStreams int
	// HSTS, when positive, adds Strict-Transport-Security with this max-age
	// to answers on TLS connections that do not carry one already.
	HSTS time.Duration
	// RequestContext, when set, derives each request's context before the
	// request is built, so values every request carries (the proxy's
	// timing) cost no copy of the request in a middleware. Fixed at New.
	RequestContext func(context.Context) context.Context
	// Conns, when set, admits every accepted connection before its TLS
	// handshake (connection caps and the descriptor reserve) and closes
	// the ones it refuses at once; several Servers may share one. Fixed
	// at New: reloads go to Conns.Update.
	Conns *limit.Conns
	// Logger receives errors; nil discards them.
	Logger *slog.Logger
	// Metrics receives the connection and handshake series; nil means a
	// private set.
	Metrics *metrics.Set
}

func (o Options) withDefaults() Options {
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = o.ReadHeaderTimeout
	}
	if o.BodyReadTimeout <= 0 {
		o.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.MaxConcurrentStreams <= 0 {
		o.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	return o
}

// Server accepts connections on one or more listeners and serves them.
// Its methods are safe for concurrent use.
type Server struct {
	opts  atomic.Pointer[settings] // swapped whole by Update; read through o()
	m     *serverMetrics
	hsLog *rate.Limiter
	h2    bool       // HTTP/2 is offered (ALPN h2)
	h2srv *h2.Server // serves the connections that negotiated h2
	// baseCtx carries http.ServerContextKey, as net/http's contexts do:
	// the proxy (as httputil.ReverseProxy) aborts a cut-off answer with a
	// panic only when it is present, and an HTTP/1.1 answer must not end
	// cleanly then.
	baseCtx context.Context

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*h1Conn]struct{}
	hijacked  map[net.Conn]struct{}
	closing   atomic.Bool
	handshake sync.WaitGroup // handshake goroutines in progress
	acceptLog acceptLog
}

// New returns a Server for opts.
func New(opts Options) (*Server, error) {
	if opts.Handler == nil {
		return nil, errors.New("front: Options.Handler is required")
	}
	o := opts.withDefaults()
	s := &Server{
		m:         newServerMetrics(o.Metrics),
		hsLog:     rate.NewLimiter(rate.Every(time.Second), 5),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*h1Conn]struct{}),
		hijacked:  make(map[net.Conn]struct{}),
	}
	s.opts.Store(newSettings(o))
	s.baseCtx = context.WithValue(context.Background(), http.ServerContextKey, &http.Server{})
	s.h2 = o.TLSConfig != nil && offersH2(o.TLSConfig)
	ho := h2Options(s.opts.Load())
	ho.Handler, ho.Metrics, ho.Logger, ho.RequestContext = o.Handler, s.m, o.Logger, s.requestContext
	s.h2srv = h2.NewServer(ho)
	return s, nil
}

// settings are the options in force with what is derived from them.
type settings struct {
	Options
	hsts string // Strict-Transport-Security value; "" for none
}

func newSettings(o Options) *settings { return &settings{Options: o, hsts: hstsValue(o.HSTS)} }

// requestContext returns a new request's context and its cancel function.
func (s *Server) requestContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(s.baseCtx)
	if f := s.o().RequestContext; f != nil {
		ctx = f(ctx)
	}
	return ctx, cancel
}

// newRequest returns an empty request that carries ctx. WithContext on a
// literal that does not escape costs one allocation, where building the
// request first and then calling WithContext costs two.
func newRequest(ctx context.Context) *http.Request {
	return (&http.Request{}).WithContext(ctx)
}

// o returns the options in force.
func (s *Server) o() *Options { return &s.opts.Load().Options }

// hsts returns the Strict-Transport-Security value in force.
func (s *Server) hsts() string { return s.opts.Load().hsts }

// Update applies new timeouts, header limit and HSTS from a configuration
// reload to requests from now on, on connections already open too;
// Handler, TLSConfig, Logger and Metrics stay those given to New. An
// HTTP/2 connection keeps the stream limit it announced when it opened.
func (s *Server) Update(o Options) {
	cur := s.o()
	o.Handler, o.TLSConfig, o.Logger, o.Metrics = cur.Handler, cur.TLSConfig, cur.Logger, cur.Metrics
	o.RequestContext, o.Conns = cur.RequestContext, cur.Conns
	st := newSettings(o.withDefaults())
	s.opts.Store(st)
	s.h2srv.Update(h2Options(st))
}

// h2Options returns the HTTP/2 server's share of st, the ones Update may
// change.
func h2Options(st *settings) h2.Options {
	return h2.Options{
		ReadHeaderTimeout:    st.ReadHeaderTimeout,
		IdleTimeout:          st.IdleTimeout,
		BodyReadTimeout:      st.BodyReadTimeout,
		WriteTimeout:         st.WriteTimeout,
		MaxHeaderBytes:       st.MaxHeaderBytes,
		MaxConcurrentStreams: st.MaxConcurrentStreams,
		HSTS:                 st.hsts,
	}
}

func offersH2(c *tls.Config) bool {
	for _, p := range c.NextProtos {
		if p == "h2" {
			return true
		}
	}
	return false
}

// Serve accepts connections on ln until Shutdown or Close. It always returns
// a non-nil error; after Shutdown or Close it is http.ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			if isTemporary(err) {
				// EMFILE and friends: back off as net/http does instead of spinning.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.acceptFailed(ln, err, delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		delay = 0
		if lim := s.o().Conns; lim != nil {
			if c, _ = lim.Accept(c); c == nil {
				continue // refused, closed and counted
			}
		}
		if s.o().TLSConfig == nil {
			// A fresh goroutine per connection: its stack starts small.
			go s.serveH1(c, nil)
			continue
		}
		s.handshake.Add(1)
		go s.handshakeAndServe(c)
	}
}

// acceptLogInterval is the least time between two log lines about failed
// accepts: out of descriptors, the accept loop fails hundreds of times a
// second, and a line for each would fill the log.
const acceptLogInterval = 10 * time.Second

// acceptLog is the state of the one-line-per-interval log of failed
// accepts.
type acceptLog struct {
	mu     sync.Mutex
	last   time.Time // of the last line
	failed int       // accepts failed since
}

// acceptFailed counts a failed accept in
// bulwark_accept_errors_total{reason} and logs it, at most one line per
// acceptLogInterval, saying how many failed since the last line.
func (s *Server) acceptFailed(ln net.Listener, err error, delay time.Duration) {
	reason := acceptErrorReason(err)
	s.m.set.GetOrCreateCounter(`bulwark_accept_errors_total{reason="` + reason + `"}`).Inc()
	l := &s.acceptLog
	l.mu.Lock()
	l.failed++
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < acceptLogInterval {
		l.mu.Unlock()
		return
	}
	failed := l.failed
	l.last, l.failed = now, 0
	l.mu.Unlock()
	s.o().Logger.Warn("accepting client connections fails; retrying with back-off", "listener", ln.Addr().String(),
		"reason", reason, "err", err, "failed_since_last_line", failed, "delay", delay)
}

// acceptErrorReason maps a temporary accept error to a label value.
func acceptErrorReason(err error) string {
	switch {
	case limit.OutOfDescriptors(err):
		return "fd_exhausted"
	case errors.Is(err, syscall.ENOBUFS), errors.Is(err, syscall.ENOMEM):
		return "no_memory"
	default:
		return "aborted"
	}
}

func isTemporary(err error) bool {
	return limit.OutOfDescriptors(err) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// handshakeAndServe runs the TLS handshake on this short-lived goroutine and
// serves the connection on a new one, so that the stack grown by the
// handshake is not kept for the life of an idle connection.
func (s *Server) handshakeAndServe(raw net.Conn) {
	defer s.handshake.Done()
	tc := tls.Server(raw, s.o().TLSConfig)
	ctx, cancel := context.WithTimeout(context.Background(), s.o().HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.handshakeFailed(raw, err)
		tc.Close()
		return
	}
	st := tc.ConnectionState()
	s.m.handshakes.Inc()
	if st.DidResume {
		s.m.resumed.Inc()
	}
	switch {
	case st.NegotiatedProtocol == "acme-tls/1":
		// A tls-alpn-01 validation ends with the handshake (RFC 8737 §3):
		// no HTTP is spoken on such a connection.
		tc.Close()
	case st.NegotiatedProtocol == "h2" && s.h2:
		go s.h2srv.ServeConn(tc, &st)
	default:
		go s.serveH1(tc, &st)
	}
}

func (s *Server) handshakeFailed(raw net.Conn, err error) {
	reason := handshakeFailureReason(err)
	s.m.handshakeFailure(reason).Inc()
	if s.hsLog.Allow() {
		s.o().Logger.Info("tls handshake failed", "client", raw.RemoteAddr().String(), "reason", reason, "err", err)
	}
}

// handshakeFailureReason maps a handshake error to a small fixed label set.
func handshakeFailureReason(err error) string {
	var ne net.Error
	var ae tls.AlertError
	var rhe tls.RecordHeaderError
	msg := err.Error()
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &rhe):
		return "not_tls"
	case errors.As(err, &ae):
		return "client_alert"
	case strings.Contains(msg, "protocol version"):
		return "protocol_version"
	case strings.Contains(msg, "cipher suite"), strings.Contains(msg, "no cipher"):
		return "no_shared_cipher"
	case strings.Contains(msg, "certificate"):
		return "certificate"
	default:
		return "other"
	}
}

// Shutdown stops accepting, lets requests in progress finish, and closes
// idle connections; HTTP/1.1 connections close after their current answer
// and HTTP/2 ones get a GOAWAY. When ctx ends first, every remaining
// connection, hijacked ones (WebSockets) included, is closed and ctx's
// error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.wakeIfIdle()
	}
	s.mu.Unlock()
	s.h2srv.Shutdown() // writes GOAWAYs: not under s.mu
	s.handshake.Wait() // bounded by HandshakeTimeout
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns) + len(s.hijacked)
		s.mu.Unlock()
		n += s.h2srv.Open()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes every listener and connection at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing.Store(true)
	var closers []io.Closer
	for ln := range s.listeners {
		closers = append(closers, ln)
	}
	for c := range s.conns {
		closers = append(closers, c.rwc)
	}
	for c := range s.hijacked {
		closers = append(closers, c) // its Close untracks it: not under s.mu
	}
	s.mu.Unlock()
	for _, c := range closers {
		c.Close()
	}
	s.h2srv.Close()
	return nil
}

func (s *Server) track(c *h1Conn, add bool) {
	s.mu.Lock()
	if add {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	s.mu.Unlock()
}

func (s *Server) trackHijacked(c net.Conn, add bool) {
	s.mu.Lock()
	if add {
		s.hijacked[c] = struct{}{}
	} else {
		delete(s.hijacked, c)
	}
	s.mu.Unlock()
}

// serverMetrics are the connection and handshake series.
type serverMetrics struct {
	set        *metrics.Set
	handshakes *metrics.Counter
	resumed    *metrics.Counter
	h1Active   *metrics.Gauge
	h1Idle     *metrics.Gauge
	h2Active   *metrics.Gauge
	h2Idle     *metrics.Gauge
	h2Streams  *metrics.Gauge
}

func newServerMetrics(set *metrics.Set) *serverMetrics {
	return &serverMetrics{
		set:        set,
		handshakes: set.GetOrCreateCounter("bulwark_tls_handshakes_total"),
		resumed:    set.GetOrCreateCounter("bulwark_tls_resumed_total"),
		h1Active:   set.GetOrCreateGauge(`bulwark_client_connections{proto="h1",state="active"}`, nil),
		h1Idle:     set.GetOrCreateGauge(`bulwark_client_connections{proto="h1",state="idle"}`, nil),
		h2Active:   set.GetOrCreateGauge(`bulwark_client_connections{proto="h2",state="active"}`, nil),
		h2Idle:     set.GetOrCreateGauge(`bulwark_client_connections{proto="h2",state="idle"}`, nil),
		h2Streams:  set.GetOrCreateGauge(`bulwark_h2_streams_active`, nil),
	}
}

// refused counts an answer the front made itself (400, 414, 431, ...) in
// the same series as the refusals counted by the access log.
func (m *serverMetrics) refused(status int, reason string) *metrics.Counter {
	return m.set.GetOrCreateCounter(`bulwark_refused_total{status="` + strconv.Itoa(status) + `",reason="` + reason + `"}`)
}

// rejected counts a refusal that has no HTTP answer (an HTTP/2 stream
// refused, a connection ended with GOAWAY) in bulwark_rejected_total, the
// series of every protection against one client.
func (m *serverMetrics) rejected(reason string) *metrics.Counter {
	return m.set.GetOrCreateCounter(`bulwark_rejected_total{reason="` + reason + `"}`)
}

// serverMetrics counts for the HTTP/2 server too.
var _ h2.Metrics = (*serverMetrics)(nil)

// ConnState moves one HTTP/2 connection between idle and active.
func (m *serverMetrics) ConnState(idle, active int) {
	m.h2Idle.Add(float64(idle))
	m.h2Active.Add(float64(active))
}

// Streams changes the count of HTTP/2 streams in progress.
func (m *serverMetrics) Streams(delta int) { m.h2Streams.Add(float64(delta)) }

// Rejected counts an HTTP/2 refusal that has no HTTP answer.
func (m *serverMetrics) Rejected(reason string) { m.rejected(reason).Inc() }

// Refused counts an HTTP/2 answer the server made itself.
func (m *serverMetrics) Refused(status int, reason string) { m.refused(status, reason).Inc() }

func (m *serverMetrics) handshakeFailure(reason string) *metrics.Counter {
	return m.set.GetOrCreateCounter(`bulwark_tls_handshake_failures_total{reason="` + reason + `"}`)
}

// Stats is a snapshot of the connections a Server holds.
type Stats struct {
	H1Active, H1Idle, H1Open, H2Active, H2Idle, H2Open, H2Streams int64
}

// Stats reports the connections open now.
func (s *Server) Stats() Stats {
	a, i := int64(s.m.h1Active.Get()), int64(s.m.h1Idle.Get())
	return Stats{
		H1Active:  a,
		H1Idle:    i,
		H1Open:    a + i,
		H2Active:  int64(s.m.h2Active.Get()),
		H2Idle:    int64(s.m.h2Idle.Get()),
		H2Open:    int64(s.m.h2Active.Get() + s.m.h2Idle.Get()),
		H2Streams: int64(s.m.h2Streams.Get()),
	}
}

// hstsValue renders the Strict-Transport-Security value for max-age d.
func hstsValue(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return fmt.Sprintf("max-age=%d", int64(d/time.Second))
}
