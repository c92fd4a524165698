package limit

import (
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/time/rate"

	"bulwark/internal/clientip"
	"bulwark/internal/httperr"
)

// DefaultMaxClients is the size of the rate table when RateOptions leaves
// it zero. An entry costs about 150 bytes (the key, a map slot and an x/time
// rate.Limiter), so a full table is about 1.5 MiB.
const DefaultMaxClients = 10000

// sweepInterval is how often the rate table drops entries whose bucket
// has filled up again, so that it shrinks when traffic does.
const sweepInterval = time.Minute

// RateOptions configures Rates.
type RateOptions struct {
	// PerSecond is the request rate one client address may keep up; zero
	// or negative: no limit.
	PerSecond float64
	// Burst is how many requests a client may send at once; at least 1.
	Burst int
	// MaxClients caps the addresses the table holds. Zero means
	// DefaultMaxClients.
	MaxClients int
	// Trusted are the proxies whose X-Forwarded-For names the client, as
	// for X-Real-IP (clientip.Of).
	Trusted []netip.Prefix
	// Metrics receives bulwark_rejected_total{reason="rate_per_ip"} and
	// bulwark_rate_clients; nil means a private set.
	Metrics *metrics.Set
	// Logger receives a warning when a client that is refused sends
	// X-Forwarded-For but is not a trusted proxy; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Rates limits the request rate of each client address with a token
// bucket (golang.org/x/time/rate), answering 429 with Retry-After beyond
// it. Its methods are safe for concurrent use.
type Rates struct {
	opts atomic.Pointer[RateOptions]

	mu        sync.Mutex
	clients   map[netip.Addr]*rate.Limiter // by clientip.Key
	lastSweep time.Time

	rejected *metrics.Counter
	warn     *rate.Limiter // the X-Forwarded-For hint, at most once a minute
}

// NewRates returns a Rates for o.
func NewRates(o RateOptions) *Rates {
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	r := &Rates{
		clients:  make(map[netip.Addr]*rate.Limiter),
		rejected: o.Metrics.GetOrCreateCounter(rejectedName(ReasonRate)),
		warn:     rate.NewLimiter(rate.Every(time.Minute), 1),
	}
	o.Metrics.GetOrCreateGauge("bulwark_rate_clients", func() float64 {
		r.mu.Lock()
		defer r.mu.Unlock()
		return float64(len(r.clients))
	})
	r.Update(o)
	return r
}

// Update applies new options. When the rate or burst changed, every
// client starts again with a full bucket. Metrics stays the one given to
// NewRates.
func (r *Rates) Update(o RateOptions) {
	if o.MaxClients <= 0 {
		o.MaxClients = DefaultMaxClients
	}
	if o.Burst < 1 {
		o.Burst = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.opts.Load(); old == nil || old.PerSecond != o.PerSecond || old.Burst != o.Burst {
		clear(r.clients)
	}
	r.opts.Store(&o)
}

// Allow takes one request of client address a from its bucket. When the
// bucket is empty it returns false and how long until it holds a request
// again.
func (r *Rates) Allow(a netip.Addr) (bool, time.Duration) {
	o := r.opts.Load()
	if o.PerSecond <= 0 || !a.IsValid() {
		return true, 0
	}
	now := o.Now()
	key := clientip.Key(a)
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.lastSweep) >= sweepInterval {
		r.sweepLocked(now, o, 0)
	}
	lim := r.clients[key]
	if lim == nil {
		if len(r.clients) >= o.MaxClients {
			r.sweepLocked(now, o, o.MaxClients-o.MaxClients/8-1)
		}
		lim = rate.NewLimiter(rate.Limit(o.PerSecond), o.Burst)
		r.clients[key] = lim
	}
	if lim.AllowN(now, 1) {
		return true, 0
	}
	wait := time.Duration((1 - lim.TokensAt(now)) / o.PerSecond * float64(time.Second))
	return false, max(wait, time.Millisecond)
}

// sweepLocked drops the clients whose bucket is full again: such a client
// is no different from one never seen. When more than keep remain (keep
// > 0), it drops others, in map order (random), down to keep: a client so
// dropped starts again with a full bucket, which favours it, but only an
// attacker with more addresses than the table holds can cause it, and it
// has that many buckets anyway.
func (r *Rates) sweepLocked(now time.Time, o *RateOptions, keep int) {
	r.lastSweep = now
	full := float64(o.Burst)
	for k, lim := range r.clients {
		if lim.TokensAt(now) >= full {
			delete(r.clients, k)
		}
	}
	if keep <= 0 {
		return
	}
	for k := range r.clients {
		if len(r.clients) <= keep {
			break
		}
		delete(r.clients, k)
	}
}

// Len reports how many client addresses the table holds.
func (r *Rates) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.clients)
}

// Middleware answers 429 with Retry-After to a request whose client
// address (clientip.Of, honouring Trusted) is over its rate, before next
// reads anything of it; other requests go to next.
func (r *Rates) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { r.Serve(w, req, next) })
}

// Serve is Middleware for one request: it answers 429 to req, or passes
// it to next.
func (r *Rates) Serve(w http.ResponseWriter, req *http.Request, next http.Handler) {
	o := r.opts.Load()
	if o.PerSecond <= 0 {
		next.ServeHTTP(w, req)
		return
	}
	xff := req.Header["X-Forwarded-For"]
	ok, wait := r.Allow(clientip.Of(req.RemoteAddr, xff, o.Trusted))
	if ok {
		next.ServeHTTP(w, req)
		return
	}
	r.rejected.Inc()
	if _, peer := clientip.Peer(req.RemoteAddr); len(xff) > 0 && !clientip.Trusted(peer, o.Trusted) {
		if r.warn.Allow() {
			o.Logger.Warn("a client over limits.rate_per_ip sends X-Forwarded-For but is not in listen.trusted_proxies: "+
				"if Bulwark is behind a proxy or CDN, list it there, or every client behind it shares one limit",
				"client", peer.String())
		}
	}
	httperr.Write(w, req, &httperr.Error{
		Status:     http.StatusTooManyRequests,
		Reason:     ReasonRate,
		Msg:        "Too many requests from your address; retry later",
		RetryAfter: wait,
	})
}
