package observe

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// dashboardHTML is the whole dashboard: one page, its CSS and JS inline,
// nothing fetched from elsewhere.
//
//go:embed dashboard.html
var dashboardHTML []byte

// dashboardPolicy returns the page's Content-Security-Policy: nothing may
// load from anywhere, only the page's own inline script and style run (by
// hash, so an injected one would not), and fetches go to this origin only.
func dashboardPolicy() string {
	hashes := func(tag string) string {
		re := regexp.MustCompile(`(?s)<` + tag + `>(.*?)</` + tag + `>`)
		var out []string
		for _, m := range re.FindAllSubmatch(dashboardHTML, -1) {
			sum := sha256.Sum256(m[1])
			out = append(out, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
		}
		return strings.Join(out, " ")
	}
	return "default-src 'none'; script-src " + hashes("script") + "; style-src " + hashes("style") +
		"; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

func (s *Server) handleDashboard(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	s.writeDashboard(w, http.StatusOK)
}

func (s *Server) writeDashboard(w http.ResponseWriter, status int) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", s.csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(dashboardHTML)))
	w.WriteHeader(status)
	_, _ = w.Write(dashboardHTML)
}
