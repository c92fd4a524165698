package static

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkServe is one small file served whole, the common static answer:
// the cost per request of the checks around http.ServeContent (the
// directory's identity, the name, the open and the stat).
func BenchmarkServe(b *testing.B) {
	s, err := New(Options{Mounts: []Mount{{Path: "/static/", Dir: tree(b)}}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	h := s.Middleware(http.NotFoundHandler())
	r := httptest.NewRequest(http.MethodGet, "/static/app.css", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			b.Fatalf("GET = %d", rec.Code)
		}
	}
}
