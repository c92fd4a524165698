package app

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"bulwark/internal/compress"
	"bulwark/internal/config"
	"bulwark/internal/cors"
	"bulwark/internal/route"
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
}

// buildEdge builds the edge pieces from cfg.
func (a *App) buildEdge(cfg *config.Config) error {
	a.edge.cors = cors.New(corsOptions(cfg))
	a.edge.compress = compress.New(compressOptions(cfg))
	a.edge.routes = route.New(routeOptions(cfg))
	for _, w := range routeWarnings(cfg) {
		a.log.Warn(w)
	}
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
	a.edge.routes.Update(routeOptions(cfg))
	for _, w := range routeWarnings(cfg) {
		a.log.Warn(w)
	}
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

// routeOptions gives the router every route's effective body limit, and
// the global one for the paths no route covers.
func routeOptions(cfg *config.Config) route.Options {
	o := route.Options{MaxBody: int64(cfg.Limits.MaxBody)}
	for _, r := range cfg.Route {
		o.Rules = append(o.Rules, route.Rule{Path: r.Path, MaxBody: int64(r.Effective(cfg).MaxBody)})
	}
	return o
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

// streamPaths are limits.stream_paths and the paths of the routes that
// turn buffer_responses off: the spool never buffers answers under them.
func streamPaths(cfg *config.Config) []string {
	paths := slices.Clone(cfg.Limits.StreamPaths)
	for _, r := range cfg.Route {
		if r.BufferResponses != nil && !*r.BufferResponses && cfg.Limits.BufferResponses {
			paths = append(paths, r.Path)
		}
	}
	return paths
}

// routeWarnings names the route keys that are accepted but not yet
// applied per route: the spool and the proxy take body_buffer,
// buffer_requests, read_timeout and send_timeout for all requests at
// once, and buffer_responses can only be turned off per path. The global
// value applies to those requests meanwhile.
func routeWarnings(cfg *config.Config) []string {
	var out []string
	for i, r := range cfg.Route {
		var keys []string
		if r.BodyBuffer != nil && *r.BodyBuffer != cfg.Limits.BodyBuffer {
			keys = append(keys, "body_buffer")
		}
		if r.BufferRequests != nil && *r.BufferRequests != cfg.Limits.BufferRequests {
			keys = append(keys, "buffer_requests")
		}
		if r.BufferResponses != nil && *r.BufferResponses && !cfg.Limits.BufferResponses {
			keys = append(keys, "buffer_responses = true")
		}
		if r.ReadTimeout != nil && *r.ReadTimeout != cfg.Upstream.ReadTimeout {
			keys = append(keys, "read_timeout")
		}
		if r.SendTimeout != nil && *r.SendTimeout != cfg.Upstream.SendTimeout {
			keys = append(keys, "send_timeout")
		}
		if len(keys) > 0 {
			out = append(out, fmt.Sprintf("route[%d] (%s): %s not applied per route yet; the global value applies there",
				i, r.Path, strings.Join(keys, ", ")))
		}
	}
	return out
}
