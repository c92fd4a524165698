// Package observe is Bulwark's admin server: it serves the process's metrics
// set in the Prometheus text format, a JSON status document, a short history
// of samples and the embedded live dashboard, and it probes an optional
// database for the number of connections in use. It measures nothing about
// the proxy or the app itself: the composition root hands it a Snapshot
// function that reads the other packages' counters, and callbacks for the
// reload and restart-app actions.
//
// # Endpoints
//
// Every path requires "Authorization: Bearer <token>" when Options.Token is
// set (401 with "WWW-Authenticate: Bearer" otherwise). The dashboard path
// answers a browser without the token with the same 401 status and an empty
// dashboard shell carrying no data, so that the page can ask for the token
// and send it on its own requests.
//
//	GET  /                  the dashboard (HTML, strict Content-Security-Policy)
//	GET  /metrics           Prometheus text: Options.Metrics plus process_* and go_*
//	GET  /status            the Status document (JSON)
//	GET  /status?history=1  the Status document with its History
//	GET  /api/history       the same as /status?history=1
//	GET  /api/history?since=T  the same, but only the samples after T (Unix ms)
//	                           while the history still holds T, else all of
//	                           them with "full": true; the dashboard polls this
//	POST /api/reload        calls Options.OnReload (501 when nil)
//	POST /api/restart-app   calls Options.OnRestartApp (409 when nil)
//
// A wrong method is answered 405 with an Allow header. Without a token, a
// request whose Host is a name other than localhost is refused (403), which
// defeats DNS rebinding, and a POST from another Origin is refused on every
// configuration, which defeats cross-site form posts.
//
// # The status document
//
// Field names are snake_case and stable: they are an API for scripts and for
// `bulwark status --json`. Sizes are bytes, durations are seconds, times are
// RFC 3339. See [Status], [Snapshot], [ProcInfo], [AppInfo], [MachineInfo],
// [DBStatus], [Event] and [History] for every field.
package observe
