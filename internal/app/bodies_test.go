package app

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"bulwark/internal/spool"
)

// stalledBody yields one byte, then blocks until release is closed.
type stalledBody struct {
	sent    bool
	waiting *sync.WaitGroup
	release <-chan struct{}
}

func (b *stalledBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		p[0] = 'x'
		return 1, nil
	}
	b.waiting.Done()
	<-b.release
	return 0, io.ErrUnexpectedEOF
}

func (b *stalledBody) Close() error { return nil }

// TestDefaultChainCapsBodiesPerAddress: with the default config, the
// request chain holds spool.DefaultBodiesPerIP bodies arriving from one
// address and answers the next 429 with Retry-After, counted in the app's
// metrics as bulwark_rejected_total{reason="bodies_per_ip"}; another
// address still gets through to the spool.
func TestDefaultChainCapsBodiesPerAddress(t *testing.T) {
	a, err := New(testConfig(t, "[log]\naccess = \"off\"\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeBuilt()
	h := a.handler()
	release := make(chan struct{})
	var waiting, done sync.WaitGroup
	const n = spool.DefaultBodiesPerIP
	waiting.Add(n)
	done.Add(n)
	for range n {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Body = &stalledBody{waiting: &waiting, release: release}
		r.ContentLength = 1000
		r.RemoteAddr = "192.0.2.7:5000"
		go func() {
			defer done.Done()
			h.ServeHTTP(httptest.NewRecorder(), r)
		}()
	}
	defer func() { close(release); waitSpoolWG(t, &done) }()
	waitSpoolWG(t, &waiting)

	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x"))
	r.RemoteAddr = "192.0.2.7:5001"
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" ||
		rec.Header().Get("X-Bulwark-Error") != "bodies_per_ip" {
		t.Errorf("body %d from one address: %d, Retry-After %q, X-Bulwark-Error %q; want 429 with Retry-After, bodies_per_ip",
			n+1, rec.Code, rec.Header().Get("Retry-After"), rec.Header().Get("X-Bulwark-Error"))
	}
	rec = httptest.NewRecorder()
	r = httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x"))
	r.RemoteAddr = "192.0.2.8:5000"
	h.ServeHTTP(rec, r)
	if rec.Code == http.StatusTooManyRequests {
		t.Errorf("a body from another address: 429, want it past the cap")
	}
	var metrics bytes.Buffer
	a.set.WritePrometheus(&metrics)
	if want := `bulwark_rejected_total{reason="bodies_per_ip"} 1`; !strings.Contains(metrics.String(), want) {
		t.Errorf("app metrics lack %q", want)
	}
}

// waitSpoolWG waits for wg, failing the test after 10 s.
func waitSpoolWG(t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("not done within 10 s")
	}
}
