package spool

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

var benchSizes = []struct {
	name string
	size int
}{
	{"1MiB", 1 << 20},
	{"20MiB", 20 << 20},
}

// discardWriter is a ResponseWriter that drops the body, standing in for a
// fast client.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Flush()                      {}

// BenchmarkRequests spools a request body (128 KiB in memory, the rest in
// the temp file) and has next read it back.
func BenchmarkRequests(b *testing.B) {
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			s, err := New(Options{Dir: b.TempDir(), BufferRequests: true, Metrics: metrics.NewSet()})
			if err != nil {
				b.Fatal(err)
			}
			h := s.Requests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n, err := io.Copy(io.Discard, r.Body); err != nil || n != int64(bs.size) {
					b.Errorf("next read %d bytes, %v; want %d", n, err, bs.size)
				}
			}))
			body := pattern(bs.size)
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(bs.size))
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
				h.ServeHTTP(w, r)
			}
		})
	}
}

// BenchmarkResponses spools a response written in 32 KiB pieces while the
// copier feeds a client that takes everything at once.
func BenchmarkResponses(b *testing.B) {
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			s, err := New(Options{Dir: b.TempDir(), BufferResponses: true, Metrics: metrics.NewSet()})
			if err != nil {
				b.Fatal(err)
			}
			body := pattern(bs.size)
			h := s.Responses(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for p := body; len(p) > 0; p = p[min(len(p), 32<<10):] {
					w.Write(p[:min(len(p), 32<<10)])
				}
			}))
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(bs.size))
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, r)
			}
		})
	}
}
