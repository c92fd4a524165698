package proxy

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// downFor is how long an address that failed to connect is left out of
// turn, as nginx's max_fails=1 fail_timeout=10s: afterwards it gets
// requests again, and the first of them is its health check.
const downFor = 10 * time.Second

// target is one address of the app. Its urlHost is the key of the
// connection pool, so connections to different addresses are never mixed
// up.
type target struct {
	name    string // as configured: "host:port" or "unix:/path"
	network string // "tcp" or "unix"
	addr    string // host:port or socket path
	urlHost string // host of the outgoing URL; decoded again by dial
	// downUntil is when the address takes requests again after a failed
	// connect (Unix nanoseconds); in the past while it is up.
	downUntil atomic.Int64
}

func (t *target) up(now int64) bool { return t.downUntil.Load() <= now }

// targets are the app's addresses. Requests take them in turn, skipping
// those that failed to connect in the last downFor; a request whose connect
// fails is sent to the next one (failover), since it never reached the app.
type targets struct {
	list []*target // never empty
	next atomic.Uint64
}

func parseTargets(addrs []string) (*targets, error) {
	if len(addrs) == 0 {
		return nil, errors.New("upstream: no address")
	}
	ts := &targets{list: make([]*target, 0, len(addrs))}
	for _, a := range addrs {
		t, err := parseUpstream(a)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(ts.list, func(o *target) bool { return o.urlHost == t.urlHost }) {
			return nil, fmt.Errorf("upstream %q: named twice", a)
		}
		ts.list = append(ts.list, t)
	}
	return ts, nil
}

// pick returns the address for a new request: the next one in turn that is
// up, or, when none is, the next one anyway (it may be back).
func (ts *targets) pick() *target {
	if len(ts.list) == 1 {
		return ts.list[0]
	}
	if t := ts.nextUp(nil); t != nil {
		return t
	}
	return ts.list[ts.next.Add(1)%uint64(len(ts.list))]
}

// upstreamKey is the context key of the address a request is bound for.
type upstreamKey struct{}

// WithUpstream returns ctx with the app address its request must go to
// ("host:port" or "unix:/path"), as chosen by a pool of workers in front
// of the proxy. It need not be among the proxy's addresses: a worker being
// drained is not, and still gets the requests it was given.
func WithUpstream(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, upstreamKey{}, addr)
}

// route returns the address for a new request: the one its context is
// bound for (WithUpstream), else the next one in turn.
func (ts *targets) route(ctx context.Context) *target {
	if addr, ok := ctx.Value(upstreamKey{}).(string); ok && addr != "" {
		for _, t := range ts.list {
			if t.name == addr {
				return t
			}
		}
		if t, err := parseUpstream(addr); err == nil {
			return t
		}
	}
	return ts.pick()
}

// retryHost returns the pool key of another address that is up for a
// request that failed at key, or key when there is no other: a request
// whose worker died is sent again to one that lives.
func (ts *targets) retryHost(key string) string {
	if len(ts.list) < 2 && (len(ts.list) == 0 || ts.list[0].urlHost == key) {
		return key
	}
	if t := ts.nextUp([]string{key}); t != nil {
		return t.urlHost
	}
	return key
}

// nextUp returns the next address in turn that is up and not among tried,
// or nil.
func (ts *targets) nextUp(tried []string) *target {
	n := uint64(len(ts.list))
	start := ts.next.Add(1)
	now := time.Now().UnixNano()
	for i := range n {
		if t := ts.list[(start+i)%n]; t.up(now) && !slices.Contains(tried, t.urlHost) {
			return t
		}
	}
	return nil
}

// byKey returns the address whose pool key is key, or nil.
func (ts *targets) byKey(key string) *target {
	for _, t := range ts.list {
		if t.urlHost == key {
			return t
		}
	}
	return nil
}

// UpstreamState is one of the app's addresses, as configured, and whether
// requests take it.
type UpstreamState struct {
	Address string
	Up      bool
}

// Upstreams reports the app's addresses in the order configured. With one
// address it is always up: there is nothing to leave it out for.
func (p *Proxy) Upstreams() []UpstreamState {
	ts := p.targets.Load()
	now := time.Now().UnixNano()
	out := make([]UpstreamState, len(ts.list))
	for i, t := range ts.list {
		out[i] = UpstreamState{Address: t.name, Up: t.up(now)}
	}
	return out
}

// markDown leaves the address with pool key key out of turn for downFor
// after a failed connect. With one address there is nothing to turn to,
// so nothing is marked.
func (p *Proxy) markDown(key string, err error) {
	ts := p.targets.Load()
	if len(ts.list) < 2 {
		return
	}
	t := ts.byKey(key)
	if t == nil {
		return // an address a reload removed
	}
	now := time.Now()
	if t.downUntil.Swap(now.Add(downFor).UnixNano()) <= now.UnixNano() {
		p.m.downs.Inc()
		p.log.Warn("app address failed to connect: the other addresses take its requests", "address", t.name, "for", downFor, "err", err)
	}
}

// isDialError reports whether err is a failure to connect (refused or
// timed out): nothing of the request was sent.
func isDialError(err error) bool {
	var de *dialError
	return errors.As(err, &de)
}

// failover sends req, which failed to connect to its address with err, to
// the other addresses that are up, one after the other, while connecting
// fails: nothing of it reached the app, so any request may go elsewhere,
// provided its body can be had again.
func (p *Proxy) failover(req *http.Request, err error, got1xx func(int, textproto.MIMEHeader) error) (*http.Response, bool, error) {
	ts := p.targets.Load()
	if len(ts.list) < 2 || req.Context().Err() != nil {
		return nil, false, err
	}
	tried := []string{req.URL.Host}
	for range len(ts.list) - 1 {
		t := ts.nextUp(tried)
		if t == nil {
			break
		}
		tried = append(tried, t.urlHost)
		again, ok := resend(req)
		if !ok {
			return nil, false, err
		}
		again.URL.Host = t.urlHost
		p.m.failovers.Inc()
		p.log.Debug("sending a request that failed to connect to another app address", "method", req.Method, "path", req.URL.Path, "address", t.name, "err", err)
		res, answered, aerr := p.roundTripOnce(again, got1xx)
		if aerr == nil || answered || !isDialError(aerr) {
			return res, answered, aerr
		}
		err = aerr
	}
	return nil, false, err
}

// upGauges keeps one bulwark_upstream_up{address} series per address of a
// set of several; an address a reload removed loses its series.
func (p *Proxy) upGauges(old, cur *targets) {
	escape := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	name := func(addr string) string { return `bulwark_upstream_up{address="` + escape.Replace(addr) + `"}` }
	if old != nil && len(old.list) > 1 {
		for _, t := range old.list {
			if len(cur.list) < 2 || cur.byKey(t.urlHost) == nil {
				p.set.UnregisterMetric(name(t.name))
			}
		}
	}
	if len(cur.list) < 2 {
		return
	}
	for _, t := range cur.list {
		key := t.urlHost
		p.set.GetOrCreateGauge(name(t.name), func() float64 {
			if t := p.targets.Load().byKey(key); t != nil && t.up(time.Now().UnixNano()) {
				return 1
			}
			return 0
		})
	}
}

// unixHostSuffix marks a URL host that carries a hex-encoded socket path.
const unixHostSuffix = ".unix.bulwark.invalid"

func parseUpstream(s string) (*target, error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("upstream %q: unix socket path must be absolute", s)
		}
		return &target{name: s, network: "unix", addr: path, urlHost: hex.EncodeToString([]byte(path)) + unixHostSuffix}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: want host:port or unix:/path: %w", s, err)
	}
	if host == "" {
		return nil, fmt.Errorf("upstream %q: missing host (use 127.0.0.1 or [::1] for this machine)", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("upstream %q: port must be a number from 1 to 65535", s)
	}
	return &target{name: s, network: "tcp", addr: s, urlHost: s}, nil
}

// targetForDial maps a pool key (a target's urlHost, with or without a
// port) back to the address to dial.
func targetForDial(addr string) (network, address string, err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		if !strings.HasSuffix(addr, unixHostSuffix) {
			return "", "", fmt.Errorf("splitting dial address %q: %w", addr, err)
		}
		host = addr // a unix target's key has no port
	}
	if enc, ok := strings.CutSuffix(host, unixHostSuffix); ok {
		path, err := hex.DecodeString(enc)
		if err != nil {
			return "", "", fmt.Errorf("decoding socket path of %q: %w", addr, err)
		}
		return "unix", string(path), nil
	}
	return "tcp", addr, nil
}
