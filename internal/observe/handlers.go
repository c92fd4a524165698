package observe

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"bulwark/internal/httperr"
)

// adminPaths are the label values of bulwark_admin_requests_total{path};
// anything else is counted as "other", so the label set stays bounded.
var adminPaths = []string{"/", "/metrics", "/status", "/api/history", "/api/reload", "/api/restart-app"}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", s.handleDashboard)
	mux.HandleFunc("/metrics", s.handleMetrics)
	mux.HandleFunc("/status", s.handleStatus)
	mux.HandleFunc("/api/history", s.handleHistory)
	mux.HandleFunc("/api/reload", s.handleReload)
	mux.HandleFunc("/api/restart-app", s.handleRestartApp)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httperr.Write(w, r, httperr.New(http.StatusNotFound, "not_found", "no such admin path"))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.countRequest(r.URL.Path)
		if !s.authorized(r) && !s.openRead(r) {
			s.unauthorized(w, r)
			return
		}
		if s.opts.Token == "" && !localHost(r.Host) {
			httperr.Write(w, r, httperr.New(http.StatusForbidden, "host_refused",
				"admin server without a token answers only to an IP address or localhost"))
			return
		}
		if r.Method == http.MethodPost && crossOrigin(r) {
			httperr.Write(w, r, httperr.New(http.StatusForbidden, "cross_origin", "cross-origin request refused"))
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) countRequest(path string) {
	c, ok := s.adminReqs[path]
	if !ok {
		c = s.adminReqs["other"]
	}
	c.Inc()
}

// TokenFileHeader names, in a 401, the file holding a generated token.
const TokenFileHeader = "Bulwark-Token-File"

// unauthorized answers 401. A browser asking for the dashboard gets the
// static dashboard shell (no data in it) with the 401, so that the page can
// ask for the token and send it on its own requests.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request) {
	if s.opts.TokenFile != "" {
		w = withHeader(w, TokenFileHeader, s.opts.TokenFile)
	}
	if r.URL.Path == "/" && r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") {
		w.Header().Set("WWW-Authenticate", `Bearer realm="bulwark admin"`)
		s.writeDashboard(w, http.StatusUnauthorized)
		return
	}
	httperr.Write(withHeader(w, "WWW-Authenticate", `Bearer realm="bulwark admin"`), r,
		httperr.New(http.StatusUnauthorized, "unauthorized", "admin token missing or wrong"))
}

// allow reports whether r's method is one of methods (HEAD goes with GET),
// and answers 405 with an Allow header when it is not.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m || (m == http.MethodGet && r.Method == http.MethodHead) {
			return true
		}
	}
	list := strings.Join(methods, ", ")
	if strings.Contains(list, http.MethodGet) {
		list += ", " + http.MethodHead
	}
	httperr.Write(withHeader(w, "Allow", list), r,
		httperr.New(http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed; use "+list))
	return false
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if r.Method == http.MethodHead {
		return
	}
	s.opts.Metrics.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	h := r.URL.Query().Get("history")
	writeJSON(w, r, http.StatusOK, s.status(h != "" && h != "0" && h != "false", 0))
}

func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	var since int64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			httperr.Write(w, r, httperr.New(http.StatusBadRequest, "bad_since", "since: want a time in Unix milliseconds"))
			return
		}
		since = n
	}
	writeJSON(w, r, http.StatusOK, s.status(true, since))
}

// actionResult is the answer to a successful POST action.
type actionResult struct {
	OK      bool   `json:"ok"`
	Message string `json:"message"`
}

func (s *Server) handleReload(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	if s.opts.OnReload == nil {
		httperr.Write(w, r, httperr.New(http.StatusNotImplemented, "reload_unsupported", "reload is not available"))
		return
	}
	noWriteDeadline(w) // a reload that restarts the app waits for it
	if err := s.opts.OnReload(); err != nil {
		s.opts.Logger.Error("admin reload failed", "err", err)
		httperr.Write(w, r, &httperr.Error{Status: actionStatus(err), Reason: "reload_failed",
			Msg: "reload failed: " + err.Error(), Err: err})
		return
	}
	writeJSON(w, r, http.StatusOK, actionResult{OK: true, Message: "configuration reloaded"})
}

func (s *Server) handleRestartApp(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	if s.opts.OnRestartApp == nil {
		httperr.Write(w, r, httperr.New(http.StatusConflict, "no_app", "no app supervised"))
		return
	}
	noWriteDeadline(w) // the restart returns once the new app is ready
	if err := s.opts.OnRestartApp(); err != nil {
		s.opts.Logger.Error("admin restart-app failed", "err", err)
		httperr.Write(w, r, &httperr.Error{Status: actionStatus(err), Reason: "restart_failed",
			Msg: "restart failed: " + err.Error(), Err: err})
		return
	}
	writeJSON(w, r, http.StatusOK, actionResult{OK: true, Message: "app restarted"})
}

// actionStatus is the status of a failed action: the one an *httperr.Error
// in err carries (502 when the new app did not start), else 500.
func actionStatus(err error) int {
	var he *httperr.Error
	if errors.As(err, &he) {
		return he.Status
	}
	return http.StatusInternalServerError
}

// noWriteDeadline lifts the server's WriteTimeout for an action that waits
// for the app to start (up to its start_timeout).
func noWriteDeadline(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		httperr.Write(w, r, &httperr.Error{Status: http.StatusInternalServerError, Reason: "encoding",
			Msg: "encoding the answer failed", Err: err})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(append(b, '\n'))
	}
}

// localHost reports whether a Host header names an IP address or localhost,
// as opposed to a DNS name that could be rebound to the loopback address.
func localHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	return host == "" || strings.EqualFold(host, "localhost") || net.ParseIP(host) != nil
}

// crossOrigin reports whether a browser sent r from a page of another origin.
func crossOrigin(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return true
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}

// withHeader wraps w so that a header is added just before the status is
// written; httperr.Write drops headers set earlier.
func withHeader(w http.ResponseWriter, key, value string) http.ResponseWriter {
	return &headerWriter{ResponseWriter: w, key: key, value: value}
}

type headerWriter struct {
	http.ResponseWriter
	key, value string
}

func (h *headerWriter) WriteHeader(code int) {
	h.ResponseWriter.Header().Set(h.key, h.value)
	h.ResponseWriter.WriteHeader(code)
}

func (h *headerWriter) Unwrap() http.ResponseWriter { return h.ResponseWriter }
