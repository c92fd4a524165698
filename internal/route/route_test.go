package route

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"bulwark/internal/httperr"
)

func TestMatchLongestPrefix(t *testing.T) {
	rt := New(Options{Rules: []Rule{{Path: "/api/"}, {Path: "/api/upload/big/"}, {Path: "/api/upload/"}}})
	tests := map[string]string{
		"/api/upload/big/x": "/api/upload/big/",
		"/api/upload/x":     "/api/upload/",
		"/api/other":        "/api/",
		"/":                 "",
		"/apix":             "",
		// Matched as nginx matches a location: after "//", "/./" and
		// "/../" are resolved, so a client cannot dodge a stricter rule or
		// reach a looser one by spelling the path differently.
		"//api/other":             "/api/",
		"/./api/other":            "/api/",
		"/x/../api/other":         "/api/",
		"/api/upload/../x":        "/api/",
		"/api/upload/big/../":     "/api/upload/",
		"/api//upload/big/x":      "/api/upload/big/",
		"/../../api/upload/x":     "/api/upload/",
		"/api/.hidden/../upload/": "/api/upload/",
	}
	for path, want := range tests {
		got, ok := rt.Match(path)
		if got.Path != want || ok != (want != "") {
			t.Errorf("Match(%q) = %q, %v; want %q", path, got.Path, ok, want)
		}
	}
}

// serve runs a request with body through the middleware to an app that
// reads the whole body and reports the error it got.
func serve(rt *Router, path string, body string, length int64) (status int, appErr error, appRan bool) {
	var readErr error
	ran := false
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ran = true
		_, readErr = io.ReadAll(r.Body)
		if readErr != nil {
			httperr.Write(w, r, readErr)
		}
	})
	r := httptest.NewRequest(http.MethodPost, path, io.NopCloser(strings.NewReader(body)))
	r.ContentLength = length
	rec := httptest.NewRecorder()
	rt.Middleware(app).ServeHTTP(rec, r)
	return rec.Code, readErr, ran
}

func TestMaxBody(t *testing.T) {
	rt := New(Options{MaxBody: 10, Rules: []Rule{{Path: "/upload/", MaxBody: 100}, {Path: "/tiny/", MaxBody: 2}, {Path: "/other/"}}})
	big := strings.Repeat("x", 50)
	tests := []struct {
		path       string
		length     int64
		wantStatus int
		wantApp    bool
	}{
		{"/upload/a", 50, 200, true},
		{"/upload/a", -1, 200, true},
		{"/form", 50, 413, false},
		{"/form", -1, 413, true}, // cut off while reading
		{"/other/x", 50, 413, false},
		{"/tiny/x", -1, 413, true},
	}
	for _, tt := range tests {
		status, err, ran := serve(rt, tt.path, big, tt.length)
		if status != tt.wantStatus || ran != tt.wantApp {
			t.Errorf("POST %s (length %d) = %d, app ran %v; want %d, %v", tt.path, tt.length, status, ran, tt.wantStatus, tt.wantApp)
		}
		var he *httperr.Error
		if tt.wantStatus == 413 && tt.wantApp && (!errors.As(err, &he) || he.Status != 413) {
			t.Errorf("POST %s: body read error = %v; want an *httperr.Error 413", tt.path, err)
		}
	}
	if status, _, _ := serve(rt, "/form", strings.Repeat("x", 10), -1); status != 200 {
		t.Errorf("a body of exactly the limit = %d; want 200", status)
	}
	rt.Update(Options{})
	if status, _, _ := serve(rt, "/form", big, 50); status != 200 {
		t.Errorf("after Update with no limit = %d; want 200", status)
	}
}
