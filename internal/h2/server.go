package h2

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults applied to zero Options fields, the same as the front door's.
const (
	DefaultReadHeaderTimeout    = 10 * time.Second
	DefaultIdleTimeout          = 5 * time.Second
	DefaultMaxHeaderBytes       = 16 << 10
	DefaultBodyReadTimeout      = 60 * time.Second
	DefaultWriteTimeout         = 60 * time.Second
	DefaultMaxConcurrentStreams = 100
)

// idleHandoff is how long a connection waits for its next frame on the
// goroutine that served the last one, and how long an idle stream worker
// waits for its next stream.
const idleHandoff = 250 * time.Millisecond

// shutdownIdleGrace is how long an idle connection is still read from once
// the server shuts down.
const shutdownIdleGrace = 250 * time.Millisecond

// aLongTimeAgo is a deadline in the past: setting it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// Options configures a Server. Update replaces the ones that may change
// while connections are open; the zero value of each field is documented.
type Options struct {
	// Handler serves every request. Required.
	Handler http.Handler
	// ReadHeaderTimeout bounds the wait for the client preface, and for a
	// frame's payload once its header arrived on an idle connection. Zero
	// means DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// IdleTimeout is how long a connection with no stream may stay quiet.
	// Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// BodyReadTimeout bounds the wait for request body data, per Read.
	// Zero means DefaultBodyReadTimeout.
	BodyReadTimeout time.Duration
	// WriteTimeout bounds each write to the client, flow control waits
	// included. Zero means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// MaxHeaderBytes bounds a request's header list as RFC 9113 counts it;
	// past it the answer is 431. Zero means DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxConcurrentStreams is announced in SETTINGS and enforced, and is
	// also the rapid-reset allowance. A connection keeps the value it
	// announced. Zero means DefaultMaxConcurrentStreams.
	MaxConcurrentStreams int
	// HSTS, when not empty, is the Strict-Transport-Security value added
	// to answers that do not carry one.
	HSTS string
	// RequestContext returns a new request's context and its cancel
	// function; nil means context.WithCancel(context.Background()).
	// Fixed at NewServer.
	RequestContext func() (context.Context, context.CancelFunc)
	// Metrics receives the counts; nil discards them. Fixed at NewServer.
	Metrics Metrics
	// Logger receives errors; nil discards them. Fixed at NewServer.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
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
	if o.RequestContext == nil {
		o.RequestContext = func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}
	}
	if o.Metrics == nil {
		o.Metrics = nopMetrics{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Metrics receives what the server counts. The front door implements it
// over its metrics set; its methods must be safe for concurrent use and
// cheap, as they run on every stream.
type Metrics interface {
	// ConnState moves one connection: idle and active are deltas (+1 a
	// connection becomes idle or active, -1 it stops being so).
	ConnState(idle, active int)
	// Streams changes the count of streams whose handler runs by delta.
	Streams(delta int)
	// Rejected counts a refusal with no HTTP answer: a stream refused or
	// a connection ended with GOAWAY ENHANCE_YOUR_CALM. Reasons are the
	// Reason constants.
	Rejected(reason string)
	// Refused counts an answer the server made itself (431, 405 for
	// CONNECT), with its status and reason.
	Refused(status int, reason string)
}

// Reasons passed to Metrics.Rejected.
const (
	ReasonRapidReset     = "h2_rapid_reset"
	ReasonStreamsPerConn = "h2_streams_per_conn"
	ReasonBodiesPerConn  = "h2_bodies_per_conn"
)

type nopMetrics struct{}

func (nopMetrics) ConnState(int, int)  {}
func (nopMetrics) Streams(int)         {}
func (nopMetrics) Rejected(string)     {}
func (nopMetrics) Refused(int, string) {}

// Server serves HTTP/2 on connections handed to it. Its methods are safe
// for concurrent use.
type Server struct {
	opts atomic.Pointer[Options] // swapped whole by Update
	m    Metrics
	work chan streamTask // to idle stream workers; unbuffered
	date atomic.Pointer[cachedDate]

	mu      sync.Mutex
	conns   map[*h2Conn]struct{}
	closing atomic.Bool
}

// NewServer returns a Server for o. o.Handler must be set.
func NewServer(o Options) *Server {
	o = o.withDefaults()
	s := &Server{m: o.Metrics, work: make(chan streamTask), conns: make(map[*h2Conn]struct{})}
	s.opts.Store(&o)
	return s
}

// Update applies new timeouts, header limit and HSTS to streams from now
// on; Handler, RequestContext, Metrics and Logger stay those given to
// NewServer.
func (s *Server) Update(o Options) {
	cur := s.o()
	o.Handler, o.RequestContext, o.Metrics, o.Logger = cur.Handler, cur.RequestContext, cur.Metrics, cur.Logger
	o = o.withDefaults()
	s.opts.Store(&o)
}

// o returns the options in force.
func (s *Server) o() *Options { return s.opts.Load() }

// ServeConn serves HTTP/2 on rwc, which negotiated h2 (state is its TLS
// state, or nil), until the connection ends. It returns at once, closing
// rwc, once the server is shutting down.
func (s *Server) ServeConn(rwc net.Conn, state *tls.ConnectionState) {
	s.serveH2(rwc, state)
}

// Shutdown starts a graceful close: every connection gets a GOAWAY now
// and closes when its last stream ends (an idle one at once, after a short
// grace); new connections are refused. Open tells when all are gone.
func (s *Server) Shutdown() {
	s.mu.Lock()
	s.closing.Store(true)
	conns := make([]*h2Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown() // writes a GOAWAY: not under s.mu
	}
}

// Close closes every connection at once.
func (s *Server) Close() {
	s.mu.Lock()
	s.closing.Store(true)
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c.rwc)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Open reports how many connections are open.
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// track adds or removes a connection. Adding fails once the server is
// closing.
func (s *Server) track(c *h2Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closing.Load() {
			return false
		}
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	return true
}

// requestContext returns a new request's context and its cancel function.
func (s *Server) requestContext() (context.Context, context.CancelFunc) {
	return s.o().RequestContext()
}

// hsts returns the Strict-Transport-Security value in force.
func (s *Server) hsts() string { return s.o().HSTS }

// refusal is an answer the server makes itself instead of calling the
// handler: a head too large, or CONNECT.
type refusal struct {
	status int
	reason string
	msg    string
}
