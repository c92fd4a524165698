package front

import (
	"net"
	"net/http"
	"strings"
)

// RedirectHandler answers every request with 308 Permanent Redirect to the
// same host, path and query over https. httpsAddr is the TLS listener's
// address; its port is added to the location unless it is 443.
func RedirectHandler(httpsAddr string) http.Handler {
	port := ""
	if _, p, err := net.SplitHostPort(httpsAddr); err == nil && p != "443" {
		port = p
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" {
			http.Error(w, "400 Bad Request: missing Host (bulwark)", http.StatusBadRequest)
			return
		}
		if strings.Contains(host, ":") { // IPv6 literal
			host = "[" + strings.Trim(host, "[]") + "]"
		}
		if port != "" {
			host += ":" + port
		}
		target := "https://" + host + r.URL.RequestURI()
		if r.URL.Path == "*" {
			target = "https://" + host + "/"
		}
		w.Header().Set("Location", target)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}
