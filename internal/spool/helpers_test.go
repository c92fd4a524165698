package spool

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// waitLimit bounds every wait in these tests; reaching it is a failure.
const waitLimit = 10 * time.Second

// newTestSpool returns a Spool on a fresh temp dir with o's settings.
func newTestSpool(t *testing.T, o Options) *Spool {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	s, err := New(o)
	if err != nil {
		t.Fatalf("New(%+v): %v", o, err)
	}
	return s
}

// pattern returns n deterministic, non-repeating-looking bytes.
func pattern(n int) []byte {
	p := make([]byte, n)
	x := uint32(2463534242)
	for i := range p {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		p[i] = byte(x)
	}
	return p
}

// spoolFDs lists the open file descriptors of this process that point into
// dir (unlinked spool files show as "dir/name (deleted)").
func spoolFDs(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	var open []string
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			open = append(open, target)
		}
	}
	return open
}

// dirEntries lists the names in dir.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// assertClean checks that s holds nothing and no spool file is open or left.
func assertClean(t *testing.T, s *Spool) {
	t.Helper()
	if got := s.Stats(); got != (Stats{}) {
		t.Errorf("Stats() = %+v, want all zero", got)
	}
	if got := spoolFDs(t, s.Dir()); len(got) != 0 {
		t.Errorf("open spool files = %q, want none", got)
	}
	if got := dirEntries(t, s.Dir()); len(got) != 0 {
		t.Errorf("files in spool dir = %q, want none", got)
	}
}

// metricValue returns the value of one series of set, or -1 when absent.
func metricValue(t *testing.T, set *metrics.Set, series string) float64 {
	t.Helper()
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for line := range strings.Lines(buf.String()) {
		name, val, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && name == series {
			var f float64
			if _, err := fmt.Sscan(val, &f); err != nil {
				t.Fatalf("parsing %q: %v", line, err)
			}
			return f
		}
	}
	return -1
}

// serve starts an httptest server for h, closed at cleanup. It reports
// through done each time h returned.
func serve(t *testing.T, h http.Handler) (srv *httptest.Server, done <-chan struct{}) {
	t.Helper()
	ch := make(chan struct{}, 16)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { ch <- struct{}{} }()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

// waitDone waits for one report on done, failing the test after waitLimit.
func waitDone(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatalf("%s: handler did not return within %v", what, waitLimit)
	}
}

// newTextLogger returns a logger writing text lines to w.
func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedWriter{w: w}, nil))
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// eventually polls cond every millisecond, at most 10,000 times (about
// waitLimit), and reports whether it became true.
func eventually(cond func() bool) bool {
	for range 10_000 {
		if cond() {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return cond()
}

// serveProto is serve over HTTP/1.1 in clear text, or over HTTP/2 with TLS
// when h2 is set; use srv.Client() to talk to it.
func serveProto(t *testing.T, h2 bool, h http.Handler) (srv *httptest.Server, done <-chan struct{}) {
	t.Helper()
	if !h2 {
		return serve(t, h)
	}
	ch := make(chan struct{}, 16)
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { ch <- struct{}{} }()
		h.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, ch
}
