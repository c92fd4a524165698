package cors

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"bulwark/internal/limit"
)

// app records whether it was called and answers with its own CORS header,
// as an app with its own middleware would.
type app struct{ calls int }

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.calls++
	w.Header().Set("Access-Control-Allow-Origin", "https://wrong.example")
	w.Header().Set("Vary", "Accept-Encoding")
	w.Write([]byte("hello"))
}

func serve(t *testing.T, c *CORS, r *http.Request) (*httptest.ResponseRecorder, int) {
	t.Helper()
	a := &app{}
	rec := httptest.NewRecorder()
	c.Middleware(a).ServeHTTP(rec, r)
	return rec, a.calls
}

func preflight(origin, method, headers string) *http.Request {
	r := httptest.NewRequest(http.MethodOptions, "https://api.example/x", nil)
	r.Header.Set("Origin", origin)
	r.Header.Set("Access-Control-Request-Method", method)
	if headers != "" {
		r.Header.Set("Access-Control-Request-Headers", headers)
	}
	return r
}

var opts = Options{
	Origins:     []string{"https://app.example.com"},
	Methods:     []string{"GET", "POST", "PUT"},
	Headers:     []string{"Content-Type", "Authorization"},
	Credentials: true,
	MaxAge:      10 * time.Minute,
}

func TestPreflightAllowed(t *testing.T) {
	rec, calls := serve(t, New(opts), preflight("https://app.example.com", "PUT", "authorization, content-type"))
	if calls != 0 {
		t.Errorf("app saw the preflight %d times; want 0", calls)
	}
	h := rec.Header()
	for k, want := range map[string]string{
		"Access-Control-Allow-Origin":      "https://app.example.com",
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Allow-Methods":     "GET, POST, PUT",
		"Access-Control-Allow-Headers":     "authorization, content-type",
		"Access-Control-Max-Age":           "600",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q; want %q", k, got, want)
		}
	}
	if rec.Code != http.StatusNoContent {
		t.Errorf("status = %d; want 204", rec.Code)
	}
}

func TestPreflightRefused(t *testing.T) {
	tests := []struct{ name, origin, method, headers string }{
		{"other origin", "https://evil.example", "GET", ""},
		{"method", "https://app.example.com", "DELETE", ""},
		{"header", "https://app.example.com", "POST", "X-Secret"},
	}
	for _, tt := range tests {
		rec, calls := serve(t, New(opts), preflight(tt.origin, tt.method, tt.headers))
		if calls != 0 || rec.Code != http.StatusNoContent {
			t.Errorf("%s: app calls = %d, status %d; want 0, 204", tt.name, calls, rec.Code)
		}
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("%s: Access-Control-Allow-Origin = %q; want none", tt.name, got)
		}
	}
}

func TestActualResponse(t *testing.T) {
	tests := []struct{ origin, wantAllow, wantCred string }{
		{"https://app.example.com", "https://app.example.com", "true"},
		{"https://evil.example", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "https://api.example/x", nil)
		if tt.origin != "" {
			r.Header.Set("Origin", tt.origin)
		}
		rec, calls := serve(t, New(opts), r)
		h := rec.Header()
		if calls != 1 {
			t.Errorf("origin %q: app calls = %d; want 1", tt.origin, calls)
		}
		if got := h.Values("Access-Control-Allow-Origin"); len(got) > 1 || h.Get("Access-Control-Allow-Origin") != tt.wantAllow {
			t.Errorf("origin %q: Access-Control-Allow-Origin = %q; want %q alone", tt.origin, got, tt.wantAllow)
		}
		if got := h.Get("Access-Control-Allow-Credentials"); got != tt.wantCred {
			t.Errorf("origin %q: Access-Control-Allow-Credentials = %q; want %q", tt.origin, got, tt.wantCred)
		}
		if got := h.Values("Vary"); len(got) != 2 || got[1] != "Origin" {
			t.Errorf("origin %q: Vary = %q; want the app's and Origin", tt.origin, got)
		}
	}
}

func TestWildcardWithoutCredentials(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "https://api.example/x", nil)
	r.Header.Set("Origin", "https://any.example")
	rec, _ := serve(t, New(Options{Origins: []string{"*"}}), r)
	if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("Access-Control-Allow-Origin = %q; want *", got)
	}
	if got := rec.Header().Get("Access-Control-Allow-Credentials"); got != "" {
		t.Errorf("Access-Control-Allow-Credentials = %q; want none", got)
	}
}

// TestWildcardWithCredentialsFailsClosed: "*" with credentials (which
// config refuses) must never echo an arbitrary origin with credentials.
func TestWildcardWithCredentialsFailsClosed(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "https://api.example/x", nil)
	r.Header.Set("Origin", "https://evil.example")
	rec, _ := serve(t, New(Options{Origins: []string{"*"}, Credentials: true}), r)
	if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("Access-Control-Allow-Origin = %q; want none", got)
	}
	if got := rec.Header().Get("Access-Control-Allow-Credentials"); got != "" {
		t.Errorf("Access-Control-Allow-Credentials = %q; want none", got)
	}
}

func TestOffPassesThrough(t *testing.T) {
	rec, calls := serve(t, New(Options{}), preflight("https://app.example.com", "PUT", ""))
	if calls != 1 {
		t.Errorf("app calls = %d; want 1: with no origins the app answers OPTIONS", calls)
	}
	if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "https://wrong.example" {
		t.Errorf("Access-Control-Allow-Origin = %q; want the app's untouched", got)
	}
}

func TestFlushKeepsHeaders(t *testing.T) {
	c := New(opts)
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "https://api.example/events", nil)
	r.Header.Set("Origin", "https://app.example.com")
	c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
	})).ServeHTTP(rec, r)
	if !rec.Flushed || rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("flushed = %v, allow origin %q; want true and the origin", rec.Flushed, rec.Header().Get("Access-Control-Allow-Origin"))
	}
}

// TestWildcardMethodsAndHeaders: methods = ["*"] and headers = ["*"] (the
// guide's allow_methods=["*"], allow_headers=["*"]) allow any method and
// header name, and the preflight echoes what was asked for, never a
// literal "*", which browsers take as a name on credentialed requests.
func TestWildcardMethodsAndHeaders(t *testing.T) {
	for _, credentials := range []bool{false, true} {
		o := Options{Origins: []string{"https://app.example.com"}, Methods: []string{"*"}, Headers: []string{"*"}, Credentials: credentials}
		if !credentials {
			o.Origins = []string{"*"}
		}
		tests := []struct {
			method, headers string
			allowed         bool
		}{
			{"PUT", "content-type,x-token", true},
			{"DELETE", "", true},
			{"PATCH", "X-Anything", true},
			{"patch", "", true}, // a page's fetch(…, {method: "patch"}): browsers compare the case
			{"PROPFIND", "", true},
			{"GET", "x-requested-with", true},
			{"PUT, DELETE", "", false}, // not a method a browser sends: not echoed
			{"PUT", "x-token, bad header", false},
		}
		for _, tt := range tests {
			name := tt.method + " " + tt.headers
			if credentials {
				name += " (credentials)"
			}
			rec, calls := serve(t, New(o), preflight("https://app.example.com", tt.method, tt.headers))
			h := rec.Header()
			if calls != 0 || rec.Code != http.StatusNoContent {
				t.Errorf("%s: app calls %d, status %d; want 0, 204", name, calls, rec.Code)
			}
			if !tt.allowed {
				if got := h.Get("Access-Control-Allow-Origin"); got != "" {
					t.Errorf("%s: Access-Control-Allow-Origin = %q; want none (refused)", name, got)
				}
				continue
			}
			wantOrigin, wantCred := "*", ""
			if credentials {
				wantOrigin, wantCred = "https://app.example.com", "true"
			}
			for k, want := range map[string]string{
				"Access-Control-Allow-Origin":      wantOrigin,
				"Access-Control-Allow-Credentials": wantCred,
				"Access-Control-Allow-Methods":     tt.method,
				"Access-Control-Allow-Headers":     tt.headers,
			} {
				if got := h.Values(k); len(got) > 1 || h.Get(k) != want {
					t.Errorf("%s: %s = %q; want %q", name, k, got, want)
				}
			}
		}
	}
}

// TestWildcardInsideOriginNeverMatches: an entry such as
// "https://*.example.com" (which config refuses) matches neither a
// subdomain nor a forged Origin header spelling it, yet keeps CORS on.
func TestWildcardInsideOriginNeverMatches(t *testing.T) {
	c := New(Options{Origins: []string{"https://*.example.com"}, Methods: []string{"PUT"}, Credentials: true})
	for _, origin := range []string{"https://*.example.com", "https://a.example.com"} {
		r := httptest.NewRequest(http.MethodGet, "https://api.example/x", nil)
		r.Header.Set("Origin", origin)
		rec, _ := serve(t, c, r)
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("GET from %q: Access-Control-Allow-Origin = %q; want none", origin, got)
		}
		if got := rec.Header().Get("Access-Control-Allow-Credentials"); got != "" {
			t.Errorf("GET from %q: Access-Control-Allow-Credentials = %q; want none", origin, got)
		}
		rec, calls := serve(t, c, preflight(origin, "PUT", ""))
		if calls != 0 || rec.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from %q: app calls %d, Access-Control-Allow-Origin %q; want 0 and none",
				origin, calls, rec.Header().Get("Access-Control-Allow-Origin"))
		}
	}
}

// TestDecorate: Decorate, outside a piece that answers by itself (here
// limits.rate_per_ip's 429) and outside Middleware, gives that answer the
// CORS headers so the page can read it, and changes nothing Middleware
// does: one Access-Control-Allow-Origin, one Vary: Origin, preflights
// answered (or refused) by Middleware alone.
func TestDecorate(t *testing.T) {
	c := New(opts)
	rates := limit.NewRates(limit.RateOptions{PerSecond: 0.001, Burst: 1})
	a := &app{}
	h := c.Decorate(rates.Middleware(c.Middleware(a)))
	do := func(r *http.Request) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	get := func(origin string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "https://api.example/x", nil)
		r.Header.Set("Origin", origin)
		return r
	}
	check := func(name string, rec *httptest.ResponseRecorder, status int, allow string) {
		t.Helper()
		hd := rec.Header()
		if rec.Code != status {
			t.Errorf("%s: status %d; want %d", name, rec.Code, status)
		}
		if got := hd.Values("Access-Control-Allow-Origin"); len(got) > 1 || hd.Get("Access-Control-Allow-Origin") != allow {
			t.Errorf("%s: Access-Control-Allow-Origin = %q; want %q alone", name, got, allow)
		}
		wantCred := ""
		if allow != "" {
			wantCred = "true"
		}
		if got := hd.Values("Access-Control-Allow-Credentials"); len(got) > 1 || hd.Get("Access-Control-Allow-Credentials") != wantCred {
			t.Errorf("%s: Access-Control-Allow-Credentials = %q; want %q", name, got, wantCred)
		}
	}

	rec := do(get("https://app.example.com"))
	check("first GET", rec, http.StatusOK, "https://app.example.com")
	if got := rec.Header().Values("Vary"); !slices.Equal(got, []string{"Accept-Encoding", "Origin"}) {
		t.Errorf("first GET: Vary = %q; want the app's and Origin once", got)
	}

	rec = do(get("https://app.example.com"))
	check("GET over the rate", rec, http.StatusTooManyRequests, "https://app.example.com")
	if rec.Header().Get("Retry-After") == "" || rec.Header().Get("X-Bulwark-Error") == "" {
		t.Errorf("GET over the rate: headers %v; want Retry-After and X-Bulwark-Error kept", rec.Header())
	}
	if got := rec.Header().Values("Vary"); !slices.Equal(got, []string{"Origin"}) {
		t.Errorf("GET over the rate: Vary = %q; want Origin", got)
	}
	check("GET over the rate from another origin", do(get("https://evil.example")), http.StatusTooManyRequests, "")

	// Preflights from another client address: Middleware answers them,
	// and Decorate adds nothing to a refusal.
	pf := preflight("https://app.example.com", "PUT", "authorization")
	pf.RemoteAddr = "192.0.2.2:1234"
	rec = do(pf)
	check("allowed preflight", rec, http.StatusNoContent, "https://app.example.com")
	if got := rec.Header().Get("Access-Control-Allow-Methods"); got != "GET, POST, PUT" {
		t.Errorf("allowed preflight: Access-Control-Allow-Methods = %q; want the list", got)
	}
	pf = preflight("https://app.example.com", "DELETE", "")
	pf.RemoteAddr = "192.0.2.3:1234"
	check("refused preflight", do(pf), http.StatusNoContent, "")
	if a.calls != 1 {
		t.Errorf("app calls = %d; want 1 (the first GET)", a.calls)
	}

	// CORS off: Decorate leaves the app's answer alone.
	c.Update(Options{})
	r := get("https://app.example.com")
	r.RemoteAddr = "192.0.2.4:1234"
	rec = do(r)
	if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "https://wrong.example" {
		t.Errorf("CORS off: Access-Control-Allow-Origin = %q; want the app's untouched", got)
	}
}

func headersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
