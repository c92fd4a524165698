package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

func TestNew_CreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "spool")
	s := newTestSpool(t, Options{Dir: dir})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("stat %s after New: %v", dir, err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o700); got != want {
		t.Errorf("dir mode = %v, want %v", got, want)
	}
	if got := s.Dir(); got != dir {
		t.Errorf("Dir() = %q, want %q", got, dir)
	}
}

func TestNew_UnusableDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dir  string
	}{
		{"dir is a file", file},
		{"parent is a file", filepath.Join(file, "spool")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{Dir: tt.dir})
			if err == nil {
				t.Fatalf("New(Dir: %q) = nil error, want one", tt.dir)
			}
			if !strings.Contains(err.Error(), tt.dir) && !strings.Contains(err.Error(), file) {
				t.Errorf("New(Dir: %q) error = %q, want it to name the dir", tt.dir, err)
			}
		})
	}
}

func TestNew_SweepsLeftovers(t *testing.T) {
	dir := t.TempDir()
	stale := []string{"bulwark-spool-123", "bulwark-spool-abc"}
	kept := []string{"other.txt", "bulwark-spoolx", "bulwark-spool-dir"}
	for _, name := range append(slices.Clone(stale), kept[:2]...) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, kept[2]), 0o700); err != nil {
		t.Fatal(err)
	}
	newTestSpool(t, Options{Dir: dir})
	got := dirEntries(t, dir)
	slices.Sort(got)
	want := slices.Sorted(slices.Values(kept))
	if !slices.Equal(got, want) {
		t.Errorf("files after New = %q, want %q", got, want)
	}
}

func TestCheckDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		dir     string
		wantErr bool
	}{
		{"writable dir", dir, false},
		{"missing", filepath.Join(dir, "missing"), true},
		{"a file", file, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CheckDir(tt.dir)
			if (err != nil) != tt.wantErr {
				t.Errorf("CheckDir(%q) error = %v, want error %v", tt.dir, err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.dir) {
				t.Errorf("CheckDir(%q) error = %q, want it to name the dir", tt.dir, err)
			}
		})
	}
	if got := dirEntries(t, dir); !slices.Equal(got, []string{"file"}) {
		t.Errorf("CheckDir left files %q, want only the test's own", got)
	}
}

func TestCheckDir_Tmpfs(t *testing.T) {
	const shm = "/dev/shm"
	var st syscall.Statfs_t
	if err := syscall.Statfs(shm, &st); err != nil || st.Type != 0x01021994 {
		t.Skipf("%s is not a tmpfs here", shm)
	}
	dir, err := os.MkdirTemp(shm, "bulwark-test-")
	if err != nil {
		t.Skipf("cannot create a dir on %s: %v", shm, err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	warnings, err := CheckDir(dir)
	if err != nil {
		t.Fatalf("CheckDir(%q) error = %v, want nil", dir, err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "tmpfs") || !strings.Contains(warnings[0], dir) {
		t.Errorf("CheckDir(%q) warnings = %q, want one naming the dir and tmpfs", dir, warnings)
	}
	disk := t.TempDir()
	if onTmpfs(disk) {
		t.Skipf("the test temp dir %s is itself on tmpfs", disk)
	}
	if warnings, _ := CheckDir(disk); len(warnings) != 0 {
		t.Errorf("CheckDir(%q) warnings = %q, want none", disk, warnings)
	}
}

func TestDefaultDir_StateDirectory(t *testing.T) {
	tests := []struct {
		env  string
		want string
	}{
		{"/var/lib/bulwark", "/var/lib/bulwark/spool"},
		{"/var/lib/a:/var/lib/b", "/var/lib/a/spool"},
	}
	for _, tt := range tests {
		t.Setenv("STATE_DIRECTORY", tt.env)
		if got := DefaultDir(); got != tt.want {
			t.Errorf("DefaultDir() with STATE_DIRECTORY=%q = %q, want %q", tt.env, got, tt.want)
		}
	}
}

func TestBuffer_MemoryThenDisk(t *testing.T) {
	tests := []struct {
		per, held int64 // MemoryPerBody, and the segments that takes
	}{
		{64 << 10, 512 + 2<<10 + 8<<10 + 2*32<<10},
		{40 << 10, 512 + 2<<10 + 8<<10 + 32<<10},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.per), func(t *testing.T) { testMemoryThenDisk(t, tt.per, tt.held) })
	}
}

func testMemoryThenDisk(t *testing.T, per, held int64) {
	s := newTestSpool(t, Options{MemoryPerBody: per})
	want := pattern(200<<10 + 7)
	b := s.NewBuffer()
	for p := want; len(p) > 0; {
		n := min(len(p), 10_001) // odd sizes cross chunk borders
		if _, err := b.Write(p[:n]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		p = p[n:]
	}
	if got, want := b.Size(), int64(len(want)); got != want {
		t.Errorf("Size() = %d, want %d", got, want)
	}
	if !b.OnDisk() {
		t.Errorf("OnDisk() = false, want true for a body past MemoryPerBody")
	}
	if got, want := s.Stats(), (Stats{MemoryBytes: held, DiskBytes: int64(len(want)) - per, ActiveBodies: 1, Files: 1}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	fi, err := b.f.Stat()
	if err != nil {
		t.Fatalf("stat spool file: %v", err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Errorf("spool file mode = %v, want %v", got, want)
	}
	if got := dirEntries(t, s.Dir()); len(got) != 0 {
		t.Errorf("spool dir holds %q while the body is open, want the file unlinked", got)
	}
	if got := spoolFDs(t, s.Dir()); len(got) != 1 {
		t.Errorf("open spool files = %q, want one", got)
	}
	for range 2 { // readers are independent
		got, err := io.ReadAll(b.Reader())
		if err != nil {
			t.Fatalf("reading back: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("read back %d bytes, differing from the %d written", len(got), len(want))
		}
	}
	b.Close()
	b.Close() // twice is fine
	assertClean(t, s)
	if _, err := b.Reader().Read(make([]byte, 1)); err == nil {
		t.Errorf("Read after Close = nil error, want one")
	}
	if _, err := b.Write([]byte("x")); err == nil {
		t.Errorf("Write after Close = nil error, want one")
	}
}

func TestBuffer_MemoryBudget(t *testing.T) {
	const per = 64 << 10
	const held = 512 + 2<<10 + 8<<10 + 2*32<<10 // the segments per bytes take
	set := metrics.NewSet()
	s := newTestSpool(t, Options{MemoryPerBody: per, MemoryBudget: held, Metrics: set})
	a := s.NewBuffer()
	if _, err := a.Write(pattern(per)); err != nil {
		t.Fatal(err)
	}
	b := s.NewBuffer()
	if _, err := b.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if a.OnDisk() || !b.OnDisk() {
		t.Errorf("OnDisk() = %v, %v for the first and second body, want false, true (budget used up)", a.OnDisk(), b.OnDisk())
	}
	if got, want := s.Stats(), (Stats{MemoryBytes: held, DiskBytes: 1, ActiveBodies: 2, Files: 1}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	if got := metricValue(t, set, "bulwark_spool_memory_bytes"); got != held {
		t.Errorf("bulwark_spool_memory_bytes = %v, want %v", got, held)
	}
	a.Close()
	b.Close()
	c := s.NewBuffer()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if c.OnDisk() {
		t.Errorf("OnDisk() = true for a body after the budget was freed, want false")
	}
	c.Close()
	assertClean(t, s)
	for _, tt := range []struct {
		series string
		want   float64
	}{
		{`bulwark_spool_bodies_total{kind="request",where="memory"}`, 2},
		{`bulwark_spool_bodies_total{kind="request",where="disk"}`, 1},
		{`bulwark_spool_bodies_total{kind="response",where="disk"}`, 0},
		{"bulwark_spool_memory_bytes", 0},
		{"bulwark_spool_disk_bytes", 0},
	} {
		if got := metricValue(t, set, tt.series); got != tt.want {
			t.Errorf("%s = %v, want %v", tt.series, got, tt.want)
		}
	}
}

func TestBuffer_DiskLimit(t *testing.T) {
	s := newTestSpool(t, Options{MemoryPerBody: -1, DiskLimit: 100 << 10})
	b := s.NewBuffer()
	defer b.Close()
	if _, err := b.Write(pattern(60 << 10)); err != nil {
		t.Fatalf("first Write: %v", err)
	}
	_, err := b.Write(pattern(60 << 10))
	if !errors.Is(err, ErrSpoolFull) {
		t.Fatalf("Write past DiskLimit = %v, want ErrSpoolFull", err)
	}
	if got, want := s.Stats().DiskBytes, int64(60<<10); got != want {
		t.Errorf("DiskBytes = %d, want %d (the refused write not counted)", got, want)
	}
	if got, want := b.Size(), int64(60<<10); got != want {
		t.Errorf("Size() = %d, want %d", got, want)
	}
}

func TestBuffer_WriteError(t *testing.T) {
	s := newTestSpool(t, Options{MemoryPerBody: -1})
	s.openTemp = func() (*os.File, error) { return os.OpenFile("/dev/full", os.O_RDWR, 0) }
	b := s.NewBuffer()
	defer b.Close()
	_, err := b.Write([]byte("x"))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Write to a full disk = %v, want ENOSPC", err)
	}
	if got := s.Stats().DiskBytes; got != 0 {
		t.Errorf("DiskBytes = %d after a failed write, want 0", got)
	}
}

func TestCheckDir_DefaultIsCreated(t *testing.T) {
	state := t.TempDir()
	t.Setenv("STATE_DIRECTORY", state)
	warnings, err := CheckDir("")
	if err != nil {
		t.Fatalf("CheckDir(\"\") = %v, want nil", err)
	}
	if fi, err := os.Stat(filepath.Join(state, "spool")); err != nil || !fi.IsDir() {
		t.Errorf("default spool dir under STATE_DIRECTORY: %v, want it created", err)
	}
	if onTmpfs(state) != (len(warnings) == 1) {
		t.Errorf("CheckDir(\"\") warnings = %q, want one exactly when on tmpfs", warnings)
	}
}

func TestUpdateAppliesNewLimits(t *testing.T) {
	s := newTestSpool(t, Options{BufferRequests: true, MaxBody: 10})
	h := s.Requests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	post := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("a", 20))))
		return rec.Code
	}
	if got := post(); got != http.StatusRequestEntityTooLarge {
		t.Fatalf("20 bytes with MaxBody 10: got %d, want 413", got)
	}
	if err := s.Update(Options{BufferRequests: true, MaxBody: 100}); err != nil {
		t.Fatal(err)
	}
	if got := post(); got != http.StatusOK {
		t.Errorf("20 bytes after raising MaxBody to 100: got %d, want 200", got)
	}
	if err := s.Update(Options{Dir: t.TempDir(), MaxBody: 100}); err == nil {
		t.Error("Update with another Dir: got nil error, want one saying it needs a restart")
	}
}
