package cors

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
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
