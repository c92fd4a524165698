package app

import (
	"net/http"

	"bulwark/internal/config"
	"bulwark/internal/cors"
)

// edge holds the pieces that answer or reshape requests at the front door
// so the app does not have to (issue 19): CORS.
type edge struct {
	cors *cors.CORS
}

// buildEdge builds the edge pieces from cfg.
func (a *App) buildEdge(cfg *config.Config) error {
	a.edge.cors = cors.New(corsOptions(cfg))
	return nil
}

// updateEdge applies a reloaded cfg to the edge pieces.
func (a *App) updateEdge(cfg *config.Config) error {
	a.edge.cors.Update(corsOptions(cfg))
	return nil
}

// wrapEdge puts the edge pieces in front of next (the spool and the app).
// CORS is outermost so that Bulwark's own answers (413, 502) carry the
// headers a browser needs to read them.
func (a *App) wrapEdge(next http.Handler) http.Handler {
	return a.edge.cors.Middleware(next)
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
