package spool

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"
)

// trickle is a request body that yields one byte, then blocks until
// release is closed, as an attacker's stream that sent one byte and waits.
type trickle struct {
	sent    bool
	waiting *sync.WaitGroup // Done when the second Read blocks
	release <-chan struct{}
}

func (tr *trickle) Read(p []byte) (int, error) {
	if !tr.sent {
		tr.sent = true
		p[0] = 'x'
		return 1, nil
	}
	tr.waiting.Done()
	<-tr.release
	return 0, io.EOF
}

func (tr *trickle) Close() error { return nil }

// waitGroup waits for wg, failing the test after waitLimit.
func waitGroup(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("%s: not done within %v", what, waitLimit)
	}
}

// waitingBodies starts n requests through h, each from its own client
// address, declaring 1000 bytes and sending one; it returns once every one
// is blocked reading its second byte, and a function that lets them finish
// and waits for their handlers.
func waitingBodies(t *testing.T, h http.Handler, n int, addr func(i int) string) (finish func()) {
	t.Helper()
	release := make(chan struct{})
	var waiting, done sync.WaitGroup
	waiting.Add(n)
	done.Add(n)
	for i := range n {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Body = &trickle{waiting: &waiting, release: release}
		r.ContentLength = 1000
		r.RemoteAddr = addr(i)
		go func() {
			defer done.Done()
			h.ServeHTTP(httptest.NewRecorder(), r)
		}()
	}
	waitGroup(t, &waiting, "bodies reaching their second read")
	return func() {
		close(release)
		waitGroup(t, &done, "handlers returning")
	}
}

// TestRequests_ManyWaitingBodies is the memory side of the attack in issue
// 14: many bodies that sent one byte and then wait. Each must be charged
// its first 512-byte segment of the memory budget, not a 32 KiB chunk, so
// that all fit the low profile's 8 MiB and open no temp file; and cost
// little heap: not a chunk plus a 32 KiB read buffer.
func TestRequests_ManyWaitingBodies(t *testing.T) {
	const n = 10_000
	s := newTestSpool(t, Options{BufferRequests: true, MemoryBudget: 8 << 20})
	h := s.Requests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	finish := waitingBodies(t, h, n, func(i int) string { return fmt.Sprintf("10.0.%d.%d:4000", i>>8, i&255) })
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := s.Stats()
	fds := len(spoolFDs(t, s.Dir()))
	finish()
	perBody := (int64(after.HeapInuse) - int64(before.HeapInuse)) / n
	t.Logf("%d bodies of 1 byte waiting: heap in use %d B per body (total %.1f MiB), spool memory charged %d B, temp files open %d",
		n, perBody, float64(int64(after.HeapInuse)-int64(before.HeapInuse))/(1<<20), st.MemoryBytes, fds)
	if st.MemoryBytes != n*segMin || st.DiskBytes != 0 {
		t.Errorf("Stats() with %d one-byte bodies = %+v, want MemoryBytes %d and DiskBytes 0", n, st, n*segMin)
	}
	if fds != 0 {
		t.Errorf("%d temp files open for %d one-byte bodies, want none", fds, n)
	}
	// The request, recorder and goroutine bookkeeping of the test itself
	// take about 2 KiB; the old spool took 64 KiB more per body.
	if perBody > 8<<10 {
		t.Errorf("heap per waiting one-byte body = %d B, want at most 8 KiB", perBody)
	}
	assertClean(t, s)
}
