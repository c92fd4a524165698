package acme

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"
)

func TestNewChecksOptionsOffline(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "root.txt")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no domains", Options{Storage: dir}, "no domains"},
		{"no storage", Options{Domains: []string{"a.test"}}, "no storage"},
		{"dns-01", Options{Domains: []string{"a.test"}, Storage: dir, Challenges: []string{"dns-01"}}, `unsupported challenge type "dns-01"`},
		{"missing ca_root", Options{Domains: []string{"a.test"}, Storage: dir, CARoot: filepath.Join(dir, "nope.pem")}, "ca_root: open"},
		{"ca_root not PEM", Options{Domains: []string{"a.test"}, Storage: dir, CARoot: notPEM}, "no PEM certificate"},
	}
	for _, tt := range tests {
		_, err := New(tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New() = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "acme")); !os.IsNotExist(err) {
		t.Errorf("New created something: %v", err)
	}
}

func TestCAAndNames(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		ca      string
		staging bool
		want    string
	}{
		{"", false, LetsEncryptProduction},
		{"", true, LetsEncryptStaging},
		{"https://ca.example/dir", false, "https://ca.example/dir"},
	} {
		m, err := New(Options{Domains: []string{"Example.COM"}, Storage: dir, CA: tt.ca, Staging: tt.staging})
		if err != nil {
			t.Fatal(err)
		}
		if got := m.CA(); got != tt.want {
			t.Errorf("CA(%q, staging %v) = %q, want %q", tt.ca, tt.staging, got, tt.want)
		}
		if !m.Manages("example.com") || !m.Manages("EXAMPLE.com.") || m.Manages("www.example.com") {
			t.Errorf("Manages: wrong answer for example.com variants")
		}
	}
}

// TestHTTPHandlerPassesThrough: everything but a challenge this instance
// knows goes to the next handler (the redirect), before Start and after.
func TestHTTPHandlerPassesThrough(t *testing.T) {
	m, err := New(Options{Domains: []string{"a.test"}, Storage: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusPermanentRedirect) })
	h := m.HTTPHandler(next)
	for _, path := range []string{"/", "/.well-known/acme-challenge/unknown"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "http://a.test"+path, nil))
		if rec.Code != http.StatusPermanentRedirect {
			t.Errorf("GET %s: %d, want the next handler's 308", path, rec.Code)
		}
	}
	if _, err := m.GetCertificate(nil); err == nil {
		t.Error("GetCertificate before Start: no error")
	}
}

// syncBuffer is a log sink safe for the engine's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStartFailureIsVisible starts against a CA that refuses connections:
// storage is created 0700, and the failed order shows in Status, the log
// and a zero bulwark_cert_expiry_seconds.
func TestStartFailureIsVisible(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadCA := "https://" + ln.Addr().String() + "/dir"
	ln.Close() // nothing listens there now: connections are refused
	storage := filepath.Join(t.TempDir(), "acme")
	var logs syncBuffer
	set := metrics.NewSet()
	m, err := New(Options{
		Domains: []string{"a.test"}, Storage: storage, CA: deadCA, Challenges: []string{TLSALPN01},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Metrics: set,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Start(ctx, "127.0.0.1:8443", ""); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, "127.0.0.1:8443", ""); err == nil {
		t.Error("a second Start: no error")
	}
	fi, err := os.Stat(storage)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("storage: %v, %v; want a 0700 directory", err, fi)
	}
	deadline := time.Now().Add(20 * time.Second)
	for m.Status()[0].LastError == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no error in Status after 20s; log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := m.Status()[0]
	if st.Name != "a.test" || !st.NotAfter.IsZero() || st.Attempt.IsZero() || st.LastErrorAt.IsZero() {
		t.Errorf("Status = %+v", st)
	}
	if !strings.Contains(logs.String(), `level=ERROR msg="acme: obtaining a certificate failed; retrying with backoff" name=a.test`) {
		t.Errorf("no error line in the log:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "component=acme") {
		t.Errorf("the engine's lines are not in the log:\n%s", logs.String())
	}
	var b bytes.Buffer
	set.WritePrometheus(&b)
	if !strings.Contains(b.String(), `bulwark_cert_expiry_seconds{name="a.test"} 0`) {
		t.Errorf("metrics:\n%s", b.String())
	}
}

// TestZapToSlog: the engine's fields, levels and With attributes reach slog.
func TestZapToSlog(t *testing.T) {
	var buf bytes.Buffer
	l := zapToSlog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.With(zap.String("identifier", "a.test")).Warn("renewing", zap.Int("attempt", 2), zap.Duration("wait", time.Second))
	l.Debug("hidden")
	got := buf.String()
	for _, want := range []string{"level=WARN", `msg=renewing`, "component=acme", "identifier=a.test", "attempt=2", "wait=1s"} {
		if !strings.Contains(got, want) {
			t.Errorf("log line %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "hidden") {
		t.Errorf("a debug line passed an info handler: %q", got)
	}
}

// TestStatusNextAttempt: after failures the next attempt follows the
// engine's backoff from the last failure; after a success it is the
// renewal time, and the error is cleared.
func TestStatusNextAttempt(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var na time.Time // no certificate yet
	m := &Manager{}
	m.status = newStatusBook([]string{"a.test"}, func(string) (time.Time, time.Time) { return nb, na },
		metrics.NewSet(), slog.New(slog.DiscardHandler))
	ctx := context.Background()
	fail := map[string]any{"identifier": "a.test", "error": "connection refused"}
	m.status.onEvent(ctx, "cert_obtaining", map[string]any{"identifier": "a.test"})
	if st := m.Status()[0]; !st.NextAttempt.IsZero() || st.Attempt.IsZero() {
		t.Errorf("during the first order: %+v, want an attempt and no next one", st)
	}
	m.status.onEvent(ctx, "cert_failed", fail)
	st := m.Status()[0]
	if got := st.NextAttempt.Sub(st.LastErrorAt); got != time.Minute {
		t.Errorf("after one failure the next attempt is %v after it, want 1m", got)
	}
	m.status.onEvent(ctx, "cert_failed", fail)
	m.status.onEvent(ctx, "cert_failed", fail)
	m.status.onEvent(ctx, "cert_failed", fail)
	st = m.Status()[0]
	if got := st.NextAttempt.Sub(st.LastErrorAt); got != 5*time.Minute {
		t.Errorf("after four failures the next attempt is %v after the last, want 5m", got)
	}
	na = nb.Add(90 * 24 * time.Hour)
	m.status.onEvent(ctx, "cert_obtained", map[string]any{"identifier": "a.test"})
	st = m.Status()[0]
	if st.LastError != "" || !st.NextAttempt.Equal(nb.Add(60*24*time.Hour)) || !st.NextAttempt.Equal(st.RenewAfter) {
		t.Errorf("after a success: %+v, want no error and the next attempt at day 60 of 90", st)
	}
	if !strings.Contains(st.String(), "next attempt 2026-03-02") {
		t.Errorf("String() = %q", st.String())
	}
}
