package app

import (
	"fmt"
	"net/http"

	"bulwark/internal/compress"
	"bulwark/internal/config"
	"bulwark/internal/cors"
	"bulwark/internal/static"
)

// edge holds the pieces that answer or reshape requests at the front door
// so the app does not have to (issue 19): CORS, static files and
// compression.
type edge struct {
	cors     *cors.CORS
	static   *static.Server
	compress *compress.Compressor
}

// buildEdge builds the edge pieces from cfg.
func (a *App) buildEdge(cfg *config.Config) error {
	a.edge.cors = cors.New(corsOptions(cfg))
	a.edge.compress = compress.New(compressOptions(cfg))
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
	if err := a.edge.static.Update(staticOptions(cfg)); err != nil {
		return fmt.Errorf("static: %w; the old directories are still served", err)
	}
	return nil
}

// wrapEdge puts the edge pieces in front of next (the spool and the app).
// CORS is outermost so that Bulwark's own answers (413, 502) and static
// files carry the headers a browser needs to read them. Static files are
// served before the spool and admission: they take no app slot.
func (a *App) wrapEdge(next http.Handler) http.Handler {
	h := a.edge.static.Middleware(next)
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
	var o static.Options
	for _, s := range cfg.Static {
		o.Mounts = append(o.Mounts, static.Mount{Path: s.Path, Dir: s.Dir, Cache: s.Cache.D()})
	}
	return o
}
