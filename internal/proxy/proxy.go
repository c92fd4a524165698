// Package proxy is Bulwark's reverse-proxy handler to the app: the nginx
// "location /" block of the user's guide. It rewrites the forwarding headers
// as nginx does, keeps a pool of HTTP/1.1 keep-alive connections to the app
// (TCP or a unix socket) with its own HTTP/1.1 client in place of
// net/http.Transport (upstream.go: the request is written and its answer
// read on the handler's goroutine), relays the answer with its own copy of
// httputil.ReverseProxy's rules (relay.go; ReverseProxy itself serves only
// protocol switches), applies nginx's connect/send/read timeouts, takes an
// app that runs on several addresses in turn, leaving out one that fails to
// connect (targets.go), and answers the failures it sees with Bulwark's own
// short 413/502/504 through package httperr. Body spooling, admission and
// holding requests while the app restarts are left to the handlers in front
// of it.
package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"bulwark/internal/h1"
	"bulwark/internal/httperr"

	"github.com/VictoriaMetrics/metrics"
)

// Defaults applied by New when the corresponding Options field is zero.
const (
	// DefaultKeepAlive is the number of idle pooled connections to the app
	// (nginx's keepalive; Caddy found 32 about optimal, caddy #2805).
	DefaultKeepAlive = 32
	// DefaultIdleConnTimeout closes pooled connections idle this long. It
	// is shorter than uvicorn's --timeout-keep-alive default (5s), so
	// Bulwark drops an idle connection before the app does and never
	// reuses one the app is closing.
	DefaultIdleConnTimeout = 4 * time.Second
	// DefaultTimeout is the default of ConnectTimeout, SendTimeout and
	// ReadTimeout, as nginx's proxy_*_timeout.
	DefaultTimeout = 60 * time.Second
)

// maxResponseHeaderBytes bounds the app's response head.
const maxResponseHeaderBytes = 1 << 20

// Options configures a Proxy.
type Options struct {
	// Upstreams are the app's addresses: "host:port" ("127.0.0.1:8002",
	// "[::1]:8002") or "unix:/absolute/path.sock". At least one. Requests
	// take several in turn; one that fails to connect is left out for 10
	// seconds, and a request that could not connect to it goes to the
	// next.
	Upstreams []string
	// KeepAlive is the number of idle connections kept open to the app.
	// Zero means DefaultKeepAlive; negative means no pooling (a new
	// connection per request).
	KeepAlive int
	// IdleConnTimeout closes a pooled connection after this long unused.
	// Zero or negative means DefaultIdleConnTimeout. It is lowered to
	// ReadTimeout when longer, so an idle connection never meets the read
	// deadline first.
	IdleConnTimeout time.Duration
	// ConnectTimeout bounds connecting to the app (nginx
	// proxy_connect_timeout). Zero or negative means DefaultTimeout.
	ConnectTimeout time.Duration
	// SendTimeout bounds the gap between two successive writes to the app
	// (nginx proxy_send_timeout), not the whole request. Zero or negative
	// means DefaultTimeout.
	SendTimeout time.Duration
	// ReadTimeout bounds the gap between two successive reads from the app,
	// waiting for the response head included (nginx proxy_read_timeout),
	// not the whole response: an app that streams slowly but steadily is
	// never cut off. It applies to WebSocket and SSE streams too, as in
	// nginx. Zero or negative means DefaultTimeout.
	ReadTimeout time.Duration
	// TimeoutsFor returns a request's own send and read timeouts (a
	// [[route]]'s), which replace SendTimeout and ReadTimeout for it; a
	// zero one leaves that option in force. Nil means every request takes
	// the options'.
	TimeoutsFor func(*http.Request) (send, read time.Duration)
	// TrustedProxies are the client addresses whose X-Forwarded-For is
	// believed. Nil means none: the client's own header is dropped.
	TrustedProxies []netip.Prefix
	// MaxBody is the largest request body sent to the app: a larger
	// declared Content-Length gets a 413 before anything is sent, and a
	// chunked body is cut off (413 if no answer was started) as soon as it
	// passes the limit. Zero or negative means no limit here.
	MaxBody int64
	// UnderscoresInHeaders passes request header names that contain "_"
	// on to the app, as nginx's underscores_in_headers on does. False
	// drops them: frameworks (Django, WSGI and ASGI servers) read
	// X_Real_IP as X-Real-IP, so a client could otherwise spoof a field
	// Bulwark sets. Even when true, a name that reads as one Bulwark sets
	// or removes (X_Forwarded_For, Transfer_Encoding) is dropped.
	UnderscoresInHeaders bool
	// AwaitReady, when set, is called before the one retry of a request
	// the app never answered: an idempotent request (GET, HEAD, OPTIONS,
	// TRACE) whose connection died before any response byte, or any
	// request whose connection was refused. It should block until the app
	// is ready again (the supervisor's hold gate) or return an error, which
	// ends the request with the original failure. A request whose
	// connection died and that goes back to the same address is retried
	// only 100 ms later, so a dying app the supervisor has not seen exit
	// yet does not take its one retry. Nil means retry the idempotent
	// request at once and do not retry refused connections.
	AwaitReady func(ctx context.Context) error
	// Logger receives one warning per upstream failure. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Metrics receives the proxy's series. Nil means a private set.
	Metrics *metrics.Set
}

func (o Options) withDefaults() Options {
	if o.KeepAlive == 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.IdleConnTimeout <= 0 {
		o.IdleConnTimeout = DefaultIdleConnTimeout
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultTimeout
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = DefaultTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultTimeout
	}
	if o.IdleConnTimeout > o.ReadTimeout {
		o.IdleConnTimeout = o.ReadTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	return o
}

// Proxy is an http.Handler that forwards requests to the app. Create it
// with New; it is safe for concurrent use.
type Proxy struct {
	opts     atomic.Pointer[Options] // swapped whole by Update; read through o()
	log      *slog.Logger
	targets  atomic.Pointer[targets]
	set      *metrics.Set
	upstream *upstream // HTTP/1.1 client to the app, with its connection pool
	bufs     *bufferPool
	rp       *httputil.ReverseProxy // for upgrades only: relay serves the rest
	m        proxyMetrics
}

var _ http.Handler = (*Proxy)(nil)

// New returns a Proxy to o.Upstreams. It connects to nothing yet; an
// invalid address is an error.
func New(o Options) (*Proxy, error) {
	o = o.withDefaults()
	ts, err := parseTargets(o.Upstreams)
	if err != nil {
		return nil, err
	}
	p := &Proxy{log: o.Logger, set: o.Metrics, m: newProxyMetrics(o.Metrics)}
	p.opts.Store(&o)
	p.targets.Store(ts)
	p.upGauges(nil, ts)
	p.bufs = newBufferPool()
	p.upstream = newUpstream(p.dial, o.KeepAlive, o.IdleConnTimeout, p.bufs)
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      roundTripper{p},
		FlushInterval:  0, // SSE and unknown-length answers are flushed at once anyway
		BufferPool:     p.bufs,
		ErrorLog:       slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
		ErrorHandler:   p.handleError,
		ModifyResponse: p.modifyResponse,
	}
	return p, nil
}

// ServeHTTP forwards r to the app and relays its answer. Failures are
// answered with httperr.Write; a failure after the answer started aborts
// the client connection with http.ErrAbortHandler, which the server
// recovers. A request to switch protocols (WebSocket) goes through
// httputil.ReverseProxy, which hijacks the connection and copies both
// ways; every other request takes relay.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.o().MaxBody > 0 && r.ContentLength > p.o().MaxBody {
		p.timing(r).setReason(reasonBodyTooLarge)
		httperr.Write(w, r, httperr.BodyTooLarge(p.o().MaxBody))
		return
	}
	start := time.Now()
	if t := p.timing(r); t != nil {
		defer func() { t.upstream.Store(int64(time.Since(start))) }()
	}
	if h1.IsUpgrade(r.Header) {
		p.rp.ServeHTTP(w, r)
		return
	}
	p.relay(w, r)
}

func (p *Proxy) timing(r *http.Request) *Timing {
	return timingFrom(r.Context())
}

// o returns the options in force.
func (p *Proxy) o() *Options { return p.opts.Load() }

// Update applies new timeouts, trusted proxies, body limit and pool size
// from a configuration reload: to requests from now on, and the timeouts to
// every read and write from now on, pooled connections included; a smaller
// pool closes its oldest idle connections at once. The upstream addresses
// change with SetUpstream; the idle timeout, AwaitReady, logger and metrics
// stay those given to New.
func (p *Proxy) Update(o Options) {
	cur := p.o()
	o.Upstreams = cur.Upstreams
	o.AwaitReady, o.Logger, o.Metrics = cur.AwaitReady, cur.Logger, cur.Metrics
	o = o.withDefaults()
	o.IdleConnTimeout = cur.IdleConnTimeout // the pool keeps the one it was built with
	p.opts.Store(&o)
	p.upstream.setMaxIdle(o.KeepAlive)
}

// SetUpstream switches the app's addresses for requests that start from
// now on, as when the supervisor restarts the app on a new port. Requests
// in flight finish on the old addresses; idle connections are closed now,
// and those still busy are closed once idle (after IdleConnTimeout at the
// latest).
func (p *Proxy) SetUpstream(addrs ...string) error {
	ts, err := parseTargets(addrs)
	if err != nil {
		return err
	}
	old := p.targets.Swap(ts)
	p.upGauges(old, ts)
	p.upstream.CloseIdleConnections()
	return nil
}

// Close closes the idle connections to the app. The Proxy stays usable.
func (p *Proxy) Close() {
	p.upstream.CloseIdleConnections()
}

// bufferPool recycles the 32 KiB buffers answers are copied with.
// It holds array pointers, which a slice converts back to without an
// allocation: a pooled *[]byte would cost one on every Put.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[copyBufferSize]byte)[:] }

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != copyBufferSize {
		return
	}
	b.p.Put((*[copyBufferSize]byte)(buf[:copyBufferSize]))
}

var errClientBody = errors.New("reading the request body from the client")
