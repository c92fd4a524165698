package cli

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"bulwark/internal/observe"
)

// splitFrames splits non-terminal top output into frames; each frame
// starts with the header "bulwark VERSION" after a blank line.
func splitFrames(out, version string) []string {
	sep := "bulwark " + version + " "
	parts := strings.Split(out, "\n\n"+sep)
	for i := 1; i < len(parts); i++ {
		parts[i] = sep + parts[i]
	}
	return parts
}

func TestTopFrames(t *testing.T) {
	_, addr := startObserve(t, observe.Options{Token: testToken, Snapshot: adminSnapshot(2, true), Version: "v1.0.0-test"})
	var out, errOut bytes.Buffer
	args := []string{"--admin", addr, "--token", testToken, "--interval", "100ms", "--frames", "3"}
	if err := runTop(t.Context(), args, &out, &errOut); err != nil {
		t.Fatalf("top: %v (stderr %s)", err, errOut.String())
	}
	frames := splitFrames(out.String(), "v1.0.0-test")
	if len(frames) != 3 {
		t.Fatalf("top --frames 3 printed %d frames, want 3:\n%s", len(frames), out.String())
	}
	for i, f := range frames {
		if strings.Contains(f, "\x1b") {
			t.Errorf("frame %d has terminal escapes though stdout is not a terminal", i)
		}
		if n := strings.Count(f, "\n"); n > 24 {
			t.Errorf("frame %d is %d lines, want at most 24", i, n)
		}
		checkFits(t, f, 80)
		for _, label := range []string{"bulwark RSS ", "app RSS ", "req/s "} {
			if !strings.Contains(f, "\n"+label) {
				t.Errorf("frame %d lacks the %q sparkline", i, strings.TrimSpace(label))
			}
		}
		if !strings.ContainsAny(f, string(sparkChars)) {
			t.Errorf("frame %d has no sparkline characters", i)
		}
	}
	checkGolden(t, "top/frame.golden", mask(frames[0]))
}

func TestTopFitsWithManyProcesses(t *testing.T) {
	_, addr := startObserve(t, observe.Options{Snapshot: adminSnapshot(30, true)})
	var out bytes.Buffer
	if err := runTop(t.Context(), []string{"--admin", addr, "--frames", "1"}, &out, &out); err != nil {
		t.Fatalf("top: %v", err)
	}
	if n := strings.Count(out.String(), "\n"); n > 24 {
		t.Errorf("frame with 30 app processes is %d lines, want at most 24:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "more app processes") {
		t.Errorf("frame with 30 app processes does not say some are left out:\n%s", out.String())
	}
	checkFits(t, out.String(), 80)
}

func TestTopNothingRunning(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	var out bytes.Buffer
	err = runTop(t.Context(), []string{"--admin", closed, "--frames", "2"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "no bulwark admin server at "+closed+": connection refused") {
		t.Errorf("top against nothing = %v, want the no-server message", err)
	}
	if out.Len() != 0 {
		t.Errorf("top against nothing printed %q", out.String())
	}
}

func TestTopStopsOnCancel(t *testing.T) {
	_, addr := startObserve(t, observe.Options{Snapshot: adminSnapshot(1, true)})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var out lockedBuffer
	go func() { done <- runTop(ctx, []string{"--admin", addr, "--interval", "100ms"}, &out, &bytes.Buffer{}) }()
	// Cancel once top has drawn a second frame, that is, while it waits
	// for the next tick of a running refresh loop.
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), "\n\nbulwark ") < 1 {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("top drew fewer than two frames in 10 s: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("top after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("top did not stop on cancel")
	}
}

func TestReadKeys(t *testing.T) {
	tests := []struct {
		in   string
		quit bool
	}{
		{"q", true}, {"Q", true}, {"\x03", true}, {"abc", false}, {"xyzq", true}, {"", false},
	}
	for _, tt := range tests {
		ctx, cancel := context.WithCancel(context.Background())
		readKeys(strings.NewReader(tt.in), cancel)
		if got := ctx.Err() != nil; got != tt.quit {
			t.Errorf("readKeys(%q) quit = %v, want %v", tt.in, got, tt.quit)
		}
		cancel()
	}
}

func TestSparkline(t *testing.T) {
	tests := []struct {
		in       []float64
		fromZero bool
		want     string
	}{
		{nil, false, ""},
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8}, false, "▁▂▃▄▅▆▇█"},
		{[]float64{5, 5, 5}, false, "▁▁▁"},
		{[]float64{10, 10}, true, "██"},
		{[]float64{0, 50, 100}, true, "▁▅█"},
		{[]float64{100, 101}, true, "██"},
	}
	for _, tt := range tests {
		if got := sparkline(tt.in, tt.fromZero); got != tt.want {
			t.Errorf("sparkline(%v, %v) = %q, want %q", tt.in, tt.fromZero, got, tt.want)
		}
	}
}

func TestSparkLineWidth(t *testing.T) {
	v := make([]float64, 300)
	for i := range v {
		v[i] = float64(i)
	}
	got := sparkLine("req/s", v, true, "12.5", 80)
	if n := len([]rune(got)); n != 80 {
		t.Errorf("sparkLine with 300 samples is %d columns, want 80: %q", n, got)
	}
	if !strings.HasSuffix(got, "█        12.5") {
		t.Errorf("sparkLine = %q, want the latest (highest) sample last, then the value", got)
	}
}

// poolSnapshot is adminSnapshot with the app as a pool of n workers.
func poolSnapshot(n int) func() observe.Snapshot {
	base := adminSnapshot(0, true)
	return func() observe.Snapshot {
		s := base()
		for i := range n {
			w := observe.WorkerInfo{Index: i, PID: 7000 + i, State: "running", RSS: int64(70+i) << 20,
				PSS: int64(55+i) << 20, Served: int64(100 * (i + 1)), InFlight: i % 2,
				Started: time.Now().Add(-time.Duration(i+1) * time.Minute)}
			if i == 1 {
				w.LastRecycle = "max_requests"
			}
			s.App.Workers = append(s.App.Workers, w)
			s.App.RSS += w.RSS
			s.App.PSS += w.PSS
		}
		return s
	}
}

func TestTopWorkerRows(t *testing.T) {
	snap := poolSnapshot(3)()
	now := time.Now()
	got := renderWorkers(snap.App.Workers, 3, now, 80)
	for _, want := range []string{
		"WORKER     PID STATE         RSS      PSS  SERVED FLIGHT    AGE  LAST RECYCLE",
		"0         7000 running  70.0 MiB 55.0 MiB     100      0  1m00s  -",
		"1         7001 running  71.0 MiB 56.0 MiB     200      1  2m00s  max_requests",
		"2         7002 running  72.0 MiB 57.0 MiB     300      0  3m00s  -",
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("worker table lacks %q:\n%s", want, got)
		}
	}
	checkFits(t, got, 80)
	if cut := renderWorkers(snap.App.Workers, 1, now, 80); !strings.Contains(cut, "… 2 more workers") ||
		strings.Count(cut, "\n") != topWorkerLines(3, 1) {
		t.Errorf("table cut to one row = %q, want one row, a line saying 2 more, %d lines", cut, topWorkerLines(3, 1))
	}

	// Through top: the table replaces status's worker lines, in 24 lines.
	_, addr := startObserve(t, observe.Options{Snapshot: poolSnapshot(3)})
	var out bytes.Buffer
	if err := runTop(t.Context(), []string{"--admin", addr, "--frames", "1"}, &out, &out); err != nil {
		t.Fatalf("top: %v", err)
	}
	f := out.String()
	if !strings.Contains(f, "\nWORKER ") || !strings.Contains(f, "\n0         7000 running ") || strings.Contains(f, "  worker ") {
		t.Errorf("frame lacks the worker table, or repeats status's worker lines:\n%s", f)
	}
	if n := strings.Count(f, "\n"); n > 24 {
		t.Errorf("frame with 3 workers is %d lines, want at most 24:\n%s", n, f)
	}
	checkFits(t, f, 80)
}

func TestTopFitsWithManyWorkers(t *testing.T) {
	_, addr := startObserve(t, observe.Options{Snapshot: poolSnapshot(16)})
	var out bytes.Buffer
	if err := runTop(t.Context(), []string{"--admin", addr, "--frames", "1"}, &out, &out); err != nil {
		t.Fatalf("top: %v", err)
	}
	if n := strings.Count(out.String(), "\n"); n > 24 {
		t.Errorf("frame with 16 workers is %d lines, want at most 24:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "more workers") {
		t.Errorf("frame with 16 workers does not say some are left out:\n%s", out.String())
	}
	checkFits(t, out.String(), 80)
}

// lockedBuffer is a bytes.Buffer safe for the run goroutine's log and the
// test's read.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
