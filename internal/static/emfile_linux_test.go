package static

import (
	"os"
	"strconv"
	"syscall"
	"testing"
)

// withNoDescriptors runs f with every descriptor number below RLIMIT_NOFILE
// taken (gaps filled with /dev/null), so that the next open fails with
// EMFILE.
func withNoDescriptors(t *testing.T, f func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	highest := 0
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > highest {
			highest = n
		}
	}
	var last uintptr
	for range 4096 { // fill the gaps below the highest descriptor
		fill, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer fill.Close()
		if last = fill.Fd(); int(last) >= highest {
			break
		}
	}
	low := old
	low.Cur = uint64(last) + 1
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
			t.Fatal(err)
		}
	}()
	f()
}

// TestOutOfDescriptorsIs503: a file that exists but cannot be opened for
// want of a descriptor is a 503 with Retry-After, not a 404 that tells
// the client (and caches) it is gone.
func TestOutOfDescriptorsIs503(t *testing.T) {
	_, h := newServer(t, 0)
	if rec := get(h, "/static/app.css"); rec.Code != 200 {
		t.Fatalf("GET before = %d, want 200", rec.Code)
	}
	withNoDescriptors(t, func() {
		rec := get(h, "/static/app.css")
		if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
			t.Errorf("GET with no descriptor left = %d (Retry-After %q), want 503 with Retry-After",
				rec.Code, rec.Header().Get("Retry-After"))
		}
		if rec := get(h, "/static/missing.css"); rec.Code != 404 && rec.Code != 503 {
			t.Errorf("GET of a missing file with no descriptor left = %d", rec.Code)
		}
	})
	if rec := get(h, "/static/app.css"); rec.Code != 200 {
		t.Errorf("GET after = %d, want 200", rec.Code)
	}
}
