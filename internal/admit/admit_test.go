package admit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"bulwark/internal/httperr"

	"github.com/VictoriaMetrics/metrics"
)

// waitFor polls cond for up to 5s; the bound keeps a broken limiter from
// hanging the test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func reasonOf(err error) string {
	var he *httperr.Error
	if errors.As(err, &he) {
		return he.Reason
	}
	return ""
}

func TestNewDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Options
		want Stats
	}{
		{"zero", Options{}, Stats{MaxConcurrency: DefaultMaxConcurrency, Queue: 0}},
		{"negative", Options{MaxConcurrency: -3, Queue: -1}, Stats{MaxConcurrency: DefaultMaxConcurrency, Queue: 0}},
		{"set", Options{MaxConcurrency: 7, Queue: 9}, Stats{MaxConcurrency: 7, Queue: 9}},
	}
	for _, tt := range tests {
		if got := New(tt.in).Stats(); got != tt.want {
			t.Errorf("New(%s).Stats() = %+v, want %+v", tt.name, got, tt.want)
		}
	}
	o := Options{}.withDefaults()
	if o.QueueTimeout != DefaultQueueTimeout || o.RetryAfter != DefaultRetryAfter || o.Metrics == nil || o.Logger == nil {
		t.Errorf("Options{}.withDefaults() = %+v, want defaults filled in", o)
	}
}

// TestMaxConcurrencyUnderLoad sends 200 concurrent requests through the
// middleware to a real upstream that records how many it serves at once.
func TestMaxConcurrencyUnderLoad(t *testing.T) {
	const limit, clients = 5, 200
	var cur, peak atomic.Int32
	full := make(chan struct{})
	var fullOnce sync.Once
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if n >= limit {
			fullOnce.Do(func() { close(full) })
		}
		// Hold the slot until the limit has been reached once, so the
		// requests overlap as much as the limiter lets them.
		select {
		case <-full:
		case <-time.After(5 * time.Second):
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(app.Close)

	lim := New(Options{MaxConcurrency: limit, Queue: clients, QueueTimeout: 20 * time.Second})
	appClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: limit}}
	t.Cleanup(appClient.CloseIdleConnections)
	front := httptest.NewServer(lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := appClient.Get(app.URL)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		io.Copy(w, res.Body)
	})))
	t.Cleanup(front.Close)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 30 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := client.Get(front.URL)
			if err != nil {
				failed.Add(1)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if got := failed.Load(); got != 0 {
		t.Errorf("%d of %d requests failed, want 0", got, clients)
	}
	if got := peak.Load(); got != limit {
		t.Errorf("app saw at most %d requests at once, want exactly %d", got, limit)
	}
	if got := lim.Stats(); got.InFlight != 0 || got.Queued != 0 {
		t.Errorf("Stats() after load = %+v, want nothing in flight or queued", got)
	}
}

func TestRejections(t *testing.T) {
	tests := []struct {
		name       string
		opts       Options
		hold       int // slots taken before the request
		queue      int // waiters parked before the request
		wantReason string
	}{
		{"queue full", Options{MaxConcurrency: 1, Queue: 1}, 1, 1, ReasonQueueFull},
		{"no queue", Options{MaxConcurrency: 2, Queue: 0}, 2, 0, ReasonQueueFull},
		{"queue timeout", Options{MaxConcurrency: 1, Queue: 1, QueueTimeout: 20 * time.Millisecond}, 1, 0, ReasonQueueTimeout},
		{"memory", Options{MaxConcurrency: 1, Pressure: func() bool { return true }}, 0, 0, ReasonMemory},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := metrics.NewSet()
			tt.opts.Metrics = set
			tt.opts.RetryAfter = 3 * time.Second
			l := New(tt.opts)
			for range tt.hold {
				if _, err := l.Acquire(context.Background()); err != nil {
					t.Fatalf("Acquire to hold a slot: %v", err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			for i := range tt.queue {
				go l.Acquire(ctx)
				waitFor(t, "a parked waiter", func() bool { return l.Stats().Queued == i+1 })
			}
			called := false
			h := l.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			if called {
				t.Errorf("next was called, want the request turned away")
			}
			if got, want := rec.Code, http.StatusServiceUnavailable; got != want {
				t.Errorf("status = %d, want %d", got, want)
			}
			if got, want := rec.Header().Get("X-Bulwark-Error"), tt.wantReason; got != want {
				t.Errorf("X-Bulwark-Error = %q, want %q", got, want)
			}
			if got, want := rec.Header().Get("Retry-After"), "3"; got != want {
				t.Errorf("Retry-After = %q, want %q", got, want)
			}
			var buf bytes.Buffer
			set.WritePrometheus(&buf)
			if want := `bulwark_admit_rejected_total{reason="` + tt.wantReason + `"} 1`; !strings.Contains(buf.String(), want) {
				t.Errorf("metrics lack %q:\n%s", want, buf.String())
			}
		})
	}
}

func TestWaiterWhoseClientLeavesLeavesTheQueue(t *testing.T) {
	l := New(Options{MaxConcurrency: 1, Queue: 5, QueueTimeout: time.Minute})
	release, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := l.Acquire(ctx)
		errc <- err
	}()
	waitFor(t, "the waiter to queue", func() bool { return l.Stats().Queued == 1 })
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Acquire after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Acquire did not return after its context was cancelled")
	}
	if got := l.Stats().Queued; got != 0 {
		t.Errorf("Queued after cancel = %d, want 0", got)
	}
	release()
	if got := l.Stats().InFlight; got != 0 {
		t.Errorf("InFlight after release = %d, want 0 (the gone waiter must not get the slot)", got)
	}
}

func TestMiddlewareClientGoneIsNotAnswered(t *testing.T) {
	l := New(Options{MaxConcurrency: 1, Queue: 1})
	if _, err := l.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	l.Middleware(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil).WithContext(ctx))
	if rec.Body.Len() != 0 || rec.Header().Get("X-Bulwark-Error") != "" {
		t.Errorf("answer to a gone client = %d %q, want none", rec.Code, rec.Body.String())
	}
}

func TestFIFO(t *testing.T) {
	const n = 8
	l := New(Options{MaxConcurrency: 1, Queue: n, QueueTimeout: time.Minute})
	release, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	order := make(chan int, n)
	releases := make(chan func(), n)
	for i := range n {
		go func() {
			rel, err := l.Acquire(context.Background())
			if err != nil {
				order <- -1
				releases <- func() {}
				return
			}
			order <- i
			releases <- rel
		}()
		waitFor(t, "waiter to queue", func() bool { return l.Stats().Queued == i+1 })
	}
	release()
	for want := range n {
		select {
		case got := <-order:
			if got != want {
				t.Errorf("waiter admitted #%d = %d, want %d", want, got, want)
			}
			(<-releases)()
		case <-time.After(5 * time.Second):
			t.Fatalf("waiter %d never admitted", want)
		}
	}
}

func TestSetLimits(t *testing.T) {
	l := New(Options{MaxConcurrency: 1, Queue: 10, QueueTimeout: time.Minute})
	var rels []func()
	rel, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rels = append(rels, rel)
	got := make(chan func(), 3)
	for i := range 3 {
		go func() {
			rel, err := l.Acquire(context.Background())
			if err != nil {
				rel = func() {}
			}
			got <- rel
		}()
		waitFor(t, "waiter to queue", func() bool { return l.Stats().Queued == i+1 })
	}

	// Raising admits every waiter at once.
	l.SetLimits(4, 10, time.Minute)
	for range 3 {
		select {
		case rel := <-got:
			rels = append(rels, rel)
		case <-time.After(5 * time.Second):
			t.Fatal("raising the limit did not admit the waiters")
		}
	}
	if s := l.Stats(); s.InFlight != 4 || s.Queued != 0 || s.MaxConcurrency != 4 {
		t.Errorf("Stats() after raising = %+v, want 4 in flight, none queued, max 4", s)
	}

	// Lowering lets the four finish, and admits no one until below the new limit.
	l.SetLimits(2, 0, 0)
	if s := l.Stats(); s.InFlight != 4 || s.MaxConcurrency != 2 || s.Queue != 0 {
		t.Errorf("Stats() after lowering = %+v, want 4 still in flight, max 2, queue 0", s)
	}
	if _, err := l.Acquire(context.Background()); reasonOf(err) != ReasonQueueFull {
		t.Errorf("Acquire over the lowered limit = %v, want %s", err, ReasonQueueFull)
	}
	rels[0]()
	rels[1]()
	if _, err := l.Acquire(context.Background()); reasonOf(err) != ReasonQueueFull {
		t.Errorf("Acquire at the lowered limit = %v, want %s", err, ReasonQueueFull)
	}
	rels[2]()
	if _, err := l.Acquire(context.Background()); err != nil {
		t.Errorf("Acquire below the lowered limit = %v, want a slot", err)
	}
}

func TestReleaseIsIdempotent(t *testing.T) {
	l := New(Options{MaxConcurrency: 2})
	a, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	a()
	a()
	if got := l.Stats().InFlight; got != 1 {
		t.Errorf("InFlight after releasing one slot twice = %d, want 1", got)
	}
}

func TestGauges(t *testing.T) {
	set := metrics.NewSet()
	l := New(Options{MaxConcurrency: 1, Queue: 1, Metrics: set})
	rel, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go l.Acquire(ctx)
	waitFor(t, "waiter to queue", func() bool { return l.Stats().Queued == 1 })
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for _, want := range []string{"bulwark_inflight_requests 1\n", "bulwark_queue_length 1\n"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, buf.String())
		}
	}
	rel()
	// The waiter records its wait after it is admitted, in its goroutine.
	waitFor(t, "the wait to be recorded", func() bool {
		buf.Reset()
		set.WritePrometheus(&buf)
		return strings.Contains(buf.String(), "bulwark_queue_wait_seconds_count 1\n")
	})
	if want := "bulwark_queue_length 0\n"; !strings.Contains(buf.String(), want) {
		t.Errorf("metrics lack %q:\n%s", want, buf.String())
	}
}

func BenchmarkAcquireUncontended(b *testing.B) {
	l := New(Options{MaxConcurrency: 1})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := l.acquire(ctx); err != nil {
			b.Fatal(err)
		}
		l.release()
	}
}

func BenchmarkAcquireFuncUncontended(b *testing.B) {
	l := New(Options{MaxConcurrency: 1})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		rel, err := l.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		rel()
	}
}

func BenchmarkAcquireContended(b *testing.B) {
	l := New(Options{MaxConcurrency: 2, Queue: 1 << 16, QueueTimeout: time.Minute})
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.acquire(ctx); err != nil {
				b.Error(err)
				return
			}
			l.release()
		}
	})
}
