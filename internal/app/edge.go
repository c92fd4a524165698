package app

import (
	"fmt"
	"net/http"

	"bulwark/internal/config"
	"bulwark/internal/cors"
	"bulwark/internal/static"
)

// edge holds the pieces that answer or reshape requests at the front door
// so the app does not have to (issue 19): CORS and static files.
type edge struct {
	cors   *cors.CORS
	static *static.Server
}

// buildEdge builds the edge pieces from cfg.
func (a *App) buildEdge(cfg *config.Config) error {
	a.edge.cors = cors.New(corsOptions(cfg))
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

func staticOptions(cfg *config.Config) static.Options {
	var o static.Options
	for _, s := range cfg.Static {
		o.Mounts = append(o.Mounts, static.Mount{Path: s.Path, Dir: s.Dir, Cache: s.Cache.D()})
	}
	return o
}
