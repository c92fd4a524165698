package app

import (
	"fmt"
	"net/http"
	"time"

	"bulwark/internal/compress"
	"bulwark/internal/config"
	"bulwark/internal/cors"
	"bulwark/internal/limit"
	"bulwark/internal/route"
	"bulwark/internal/spool"
	"bulwark/internal/static"
)

// edge holds the pieces that answer or reshape requests at the front door
// so the app does not have to (issue 19): CORS, static files,
// compression and per-path rules.
type edge struct {
	cors     *cors.CORS
	static   *static.Server
	compress *compress.Compressor
	routes   *route.Router
	// rates are the rate_per_ip tables of the routes that have their own,
	// by path: a reload keeps a table (and its clients' buckets) whose
	// route is still there. Only New and Reload (under a.mu) touch it.
	rates map[string]*limit.Rates
}

// buildEdge builds the edge pieces from cfg.
func (a *App) buildEdge(cfg *config.Config) error {
	a.edge.cors = cors.New(corsOptions(cfg))
	a.edge.compress = compress.New(compressOptions(cfg))
	a.edge.routes = route.New(a.routeOptions(cfg))
	var err error
	a.edge.static, err = static.New(staticOptions(cfg))
	if err != nil {
		return fmt.Errorf("static: %w", err)
	}
	return nil
}

// updateEdge applies a reloaded cfg to the edge pieces.
func (a *App) updateEdge(cfg *config.Config) error {
	a.edge.cors.Update(corsOptions(cfg))
	a.edge.compress.Update(compressOptions(cfg))
	a.edge.routes.Update(a.routeOptions(cfg))
	if err := a.edge.static.Update(staticOptions(cfg)); err != nil {
		return fmt.Errorf("static: %w; the old directories are still served", err)
	}
	return nil
}

// wrapEdge puts the edge pieces in front of next (the spool and the app).
// CORS is outermost so that Bulwark's own answers (413, 502) and static
// files carry the headers a browser needs to read them. Static files are
// served before the spool and admission: they take no app slot. The
// routes' body limits apply before the request spool reads a byte.
func (a *App) wrapEdge(next http.Handler) http.Handler {
	h := a.edge.routes.Middleware(next)
	h = a.edge.static.Middleware(h)
	return a.edge.cors.Middleware(h)
}

// wrapRoutes selects each request's route once (route.Select), outside
// every piece that applies one of its rules, and then applies its
// rate_per_ip: the route's own table when it has one, else the global.
// The spool and the proxy read the rest of the rule through RulesFor and
// TimeoutsFor, from the same snapshot.
func (a *App) wrapRoutes(next http.Handler) http.Handler {
	limited := a.rates.Middleware(next)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rule, ok := route.From(r.Context()); ok && rule.Rates != nil {
			rule.Rates.Serve(w, r, next)
			return
		}
		limited.ServeHTTP(w, r)
	})
	return a.edge.routes.Select(h)
}

// spoolRules gives the spool the request's route's rules.
func spoolRules(r *http.Request) (spool.Rules, bool) {
	rule, ok := route.From(r.Context())
	if !ok {
		return spool.Rules{}, false
	}
	return spool.Rules{
		MemoryPerBody:   rule.BodyBuffer,
		BufferRequests:  rule.BufferRequests,
		BufferResponses: rule.BufferResponses,
		SendTimeout:     rule.SendTimeout,
	}, true
}

// proxyTimeouts gives the proxy the request's route's timeouts.
func proxyTimeouts(r *http.Request) (send, read time.Duration) {
	if rule, ok := route.From(r.Context()); ok {
		return rule.SendTimeout, rule.ReadTimeout
	}
	return 0, 0
}

func corsOptions(cfg *config.Config) cors.Options {
	c := cfg.CORS
	return cors.Options{
		Origins:     c.Origins,
		Methods:     c.Methods,
		Headers:     c.Headers,
		Credentials: c.Credentials,
		MaxAge:      c.MaxAge.D(),
	}
}

// wrapCompress compresses the app's answers. It sits inside the response
// spool, which then holds (and feeds slow clients) the smaller compressed
// bytes, and outside the request spool and admission, so Bulwark's own
// short answers (413, 503) pass through it too.
func (a *App) wrapCompress(next http.Handler) http.Handler {
	return a.edge.compress.Middleware(next)
}

func compressOptions(cfg *config.Config) compress.Options {
	return compress.Options{Types: cfg.Compress.Types, MinSize: int(cfg.Compress.MinSize)}
}

func staticOptions(cfg *config.Config) static.Options {
	o := static.Options{TrustedProxies: cfg.Listen.TrustedPrefixes()}
	for _, s := range cfg.Static {
		o.Mounts = append(o.Mounts, static.Mount{Path: s.Path, Dir: s.Dir, Cache: s.Cache.D()})
	}
	return o
}

// routeOptions gives the router every route's effective rules, and the
// global ones for the paths no route covers. A route with its own
// rate_per_ip gets a table of its own, kept across reloads by path.
func (a *App) routeOptions(cfg *config.Config) route.Options {
	o := route.Options{MaxBody: int64(cfg.Limits.MaxBody)}
	o.Default = ruleOf(config.Route{}.Effective(cfg))
	rates := make(map[string]*limit.Rates)
	for _, r := range cfg.Route {
		e := r.Effective(cfg)
		rule := ruleOf(e)
		if r.RatePerIP != nil {
			ro := a.rateOptions(cfg)
			ro.PerSecond, ro.Burst, _ = config.ParseRate(e.RatePerIP) // validated
			if rule.Rates = a.edge.rates[r.Path]; rule.Rates != nil {
				rule.Rates.Update(ro)
			} else {
				rule.Rates = limit.NewRates(ro)
			}
			rates[r.Path] = rule.Rates
		}
		o.Rules = append(o.Rules, rule)
	}
	a.edge.rates = rates
	return o
}

// ruleOf is a route's effective rules as the router carries them.
func ruleOf(e config.Effective) route.Rule {
	return route.Rule{
		Path:            e.Path,
		MaxBody:         int64(e.MaxBody),
		BodyBuffer:      int64(e.BodyBuffer),
		BufferRequests:  e.BufferRequests,
		BufferResponses: e.BufferResponses,
		ReadTimeout:     e.ReadTimeout.D(),
		SendTimeout:     e.SendTimeout.D(),
	}
}

// bodyCeiling is the body limit the spool and the proxy enforce: the
// largest of limits.max_body and the routes' max_body, since the router
// holds each request to its own route's limit before they see it.
func bodyCeiling(cfg *config.Config) int64 {
	n := int64(cfg.Limits.MaxBody)
	for _, r := range cfg.Route {
		if r.MaxBody != nil {
			n = max(n, int64(*r.MaxBody))
		}
	}
	return n
}
