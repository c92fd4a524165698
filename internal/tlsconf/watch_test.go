package tlsconf

import (
	"bytes"
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// startRun runs s.Run until the test ends, waits for its first file check
// (so its watches are in place) and checks that it returns nil when
// cancelled.
func startRun(t *testing.T, s *Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return within 5s of cancel")
		}
	})
	if !waitFor(func() bool { return s.checks.Load() > 0 }) {
		t.Fatal("Run made no first check within 5s")
	}
}

func TestRunReloadsChangedFiles(t *testing.T) {
	tests := []struct {
		name  string
		write func(t testing.TB, path string, data []byte)
	}{
		{"atomic rename", renameInto},
		{"in-place rewrite", writeFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			old := makePair(t, dir, "site", certSpec{names: []string{"a.test"}})
			set := metrics.NewSet()
			s, err := New(Options{Pairs: []Pair{old.Pair}, Metrics: set})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			addr := serve(t, s.TLSConfig())
			startRun(t, s)

			newLeaf, newKey := issue(t, certSpec{names: []string{"a.test"}})
			tt.write(t, old.KeyFile, keyPEM(t, newKey))
			tt.write(t, old.CertFile, certPEM(newLeaf))
			var last *x509.Certificate
			ok := waitFor(func() bool {
				last, err = servedLeaf(addr, "a.test")
				return err == nil && last.Equal(newLeaf)
			})
			if !ok {
				t.Fatalf("5s after writing a new pair the served certificate is serial %v (err %v), want %v",
					serialOf(last), err, newLeaf.SerialNumber)
			}
			if got := counter(set, "bulwark_tls_reloads_total"); got < 1 {
				t.Errorf("bulwark_tls_reloads_total = %d, want at least 1", got)
			}
			if got := counter(set, "bulwark_tls_reload_failures_total"); got != 0 {
				t.Errorf("bulwark_tls_reload_failures_total = %d, want 0 for a pair written within the settle time", got)
			}
		})
	}
}

func serialOf(c *x509.Certificate) any {
	if c == nil {
		return nil
	}
	return c.SerialNumber
}

func TestRunKeepsOldCertWhileHalfWritten(t *testing.T) {
	dir := t.TempDir()
	old := makePair(t, dir, "site", certSpec{names: []string{"a.test"}})
	set := metrics.NewSet()
	var logs syncBuffer
	s, err := New(Options{Pairs: []Pair{old.Pair}, Metrics: set, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s.settle = 300 * time.Millisecond
	addr := serve(t, s.TLSConfig())
	startRun(t, s)

	// The new certificate arrives first; its key is not there yet.
	newLeaf, newKey := issue(t, certSpec{names: []string{"a.test"}})
	before := s.checks.Load()
	renameInto(t, old.CertFile, certPEM(newLeaf))
	if !waitFor(func() bool { return s.checks.Load() > before }) {
		t.Fatal("Run did not check the files within 5s of the certificate changing")
	}
	if got, err := servedLeaf(addr, "a.test"); err != nil || !got.Equal(old.leaf) {
		t.Fatalf("with a new certificate but the old key, served %v (err %v), want the old certificate", serialOf(got), err)
	}
	// Past the settle time the mismatch is counted and logged, and the old
	// certificate is still served.
	if !waitFor(func() bool { return counter(set, "bulwark_tls_reload_failures_total") == 1 }) {
		t.Fatalf("bulwark_tls_reload_failures_total = %d after the settle time, want 1", counter(set, "bulwark_tls_reload_failures_total"))
	}
	if !strings.Contains(logs.String(), "does not match") {
		t.Errorf("no warning naming the mismatch in the logs:\n%s", logs.String())
	}
	if got, err := servedLeaf(addr, "a.test"); err != nil || !got.Equal(old.leaf) {
		t.Fatalf("after the settle time served %v (err %v), want the old certificate", serialOf(got), err)
	}

	// The key arrives: the new pair is served.
	renameInto(t, old.KeyFile, keyPEM(t, newKey))
	var last *x509.Certificate
	if !waitFor(func() bool { last, err = servedLeaf(addr, "a.test"); return err == nil && last.Equal(newLeaf) }) {
		t.Fatalf("5s after the key arrived served %v (err %v), want the new certificate", serialOf(last), err)
	}
}

func TestRunFollowsSymlinkSwap(t *testing.T) {
	// certbot's layout: live/ holds symbolic links into archive/, and a
	// renewal writes new archive files and then swaps the links.
	dir := t.TempDir()
	archive, live := filepath.Join(dir, "archive"), filepath.Join(dir, "live")
	for _, d := range []string{archive, live} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	first := makePair(t, archive, "v1", certSpec{names: []string{"a.test"}})
	second := makePair(t, archive, "v2", certSpec{names: []string{"a.test"}})
	link := func(target, name string) {
		tmp := filepath.Join(live, name+".tmp")
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(live, name)); err != nil {
			t.Fatal(err)
		}
	}
	link(first.CertFile, "fullchain.pem")
	link(first.KeyFile, "privkey.pem")
	p := Pair{CertFile: filepath.Join(live, "fullchain.pem"), KeyFile: filepath.Join(live, "privkey.pem")}
	s, err := New(Options{Pairs: []Pair{p}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	addr := serve(t, s.TLSConfig())
	startRun(t, s)

	link(second.CertFile, "fullchain.pem")
	link(second.KeyFile, "privkey.pem")
	var last *x509.Certificate
	if !waitFor(func() bool { last, err = servedLeaf(addr, "a.test"); return err == nil && last.Equal(second.leaf) }) {
		t.Fatalf("5s after the links moved served %v (err %v), want the second certificate", serialOf(last), err)
	}
}

func TestRunRereadsTicketKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := makePair(t, dir, "a", certSpec{names: []string{"a.test"}})
	fileA, fileB := filepath.Join(dir, "a.keys"), filepath.Join(dir, "b.keys")
	writeFile(t, fileA, bytes.Repeat([]byte{1}, 32))
	writeFile(t, fileB, bytes.Repeat([]byte{2}, 32))
	a, err := New(Options{Pairs: []Pair{p.Pair}, SessionTickets: true, TicketKeyFile: fileA})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	b, err := New(Options{Pairs: []Pair{p.Pair}, SessionTickets: true, TicketKeyFile: fileB})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	addrA, addrB := serve(t, a.TLSConfig()), serve(t, b.TLSConfig())
	if resumes(t, addrB, addrA, 0, nil) {
		t.Fatal("B's session resumed on A before A had B's key")
	}
	startRun(t, a)

	// The operator prepends B's key to A's file.
	renameInto(t, fileA, append(bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{1}, 32)...))
	if !waitFor(func() bool { return resumes(t, addrB, addrA, 0, nil) }) {
		t.Errorf("5s after A's key file gained B's key, B's sessions still do not resume on A")
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
