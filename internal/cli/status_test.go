package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"bulwark/internal/observe"
)

// The -update flag rewrites golden files (R13). Another test file of this
// package may define it already; then that definition is used.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files in testdata")
	}
}

func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

const testToken = "test-token-42"

// adminSnapshot returns a Snapshot func with fixed numbers: procs app
// processes, and uptimes of one hour.
func adminSnapshot(procs int, withApp bool) func() observe.Snapshot {
	var n atomic.Uint64
	return func() observe.Snapshot {
		start := time.Now().Add(-time.Hour)
		s := observe.Snapshot{
			Bulwark: observe.ProcInfo{PID: 4242, RSS: 23 << 20, PSS: 21 << 20, StartTime: start,
				Cmdline: "/usr/local/bin/bulwark run --config /etc/bulwark/bulwark.toml"},
			GoHeapBytes:      9 << 20,
			MemoryLimitBytes: 256 << 20,
			Machine:          observe.MachineInfo{MemTotal: 2 << 30, MemAvailable: 1288 << 20},
			ConnsH1:          12,
			ConnsH2:          3,
			ConnsActive:      5,
			ConnsIdle:        10,
			RequestsTotal:    n.Add(25),
			InFlight:         4,
			Queued:           1,
			MaxConcurrency:   50,
			QueueCap:         100,
			LatencyP50:       14 * time.Millisecond,
			LatencyP99:       230 * time.Millisecond,
		}
		if !withApp {
			s.Upstreams = []observe.UpstreamInfo{{Address: "10.0.0.2:8000", Up: true}, {Address: "10.0.0.3:8000"}}
			return s
		}
		s.Upstreams = []observe.UpstreamInfo{{Address: "127.0.0.1:8002", Up: true}}
		app := &observe.AppInfo{State: "running", PID: 5000, Since: start.Add(30 * time.Minute),
			Restarts: map[string]int{"crash": 1, "memory": 2}, LastExit: "signal: killed (memory 412.0 MiB > 400.0 MiB)",
			MaxMemory: 400 << 20}
		for i := range procs {
			p := observe.ProcInfo{PID: 5000 + i, RSS: int64(60+i) << 20, PSS: int64(50+i) << 20, StartTime: start,
				Cmdline: "/usr/bin/python3 -m uvicorn app.core:app --host 127.0.0.1 --port 8002 --workers 2"}
			if i > 0 {
				p.Cmdline = "/usr/bin/python3 -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5)"
			}
			app.Procs = append(app.Procs, p)
			app.RSS += p.RSS
			app.PSS += p.PSS
		}
		s.App = app
		return s
	}
}

// startObserve runs an observe.Server on a loopback port until the test
// ends, and returns its address.
func startObserve(t *testing.T, o observe.Options) (*observe.Server, string) {
	t.Helper()
	o.Listen = "127.0.0.1:0"
	s, err := observe.New(o)
	if err != nil {
		t.Fatalf("observe.New: %v", err)
	}
	if err := s.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("admin server did not stop")
		}
	})
	return s, s.Addr()
}

// masks hide what changes from run to run: the port, request rates and
// sparklines.
var masks = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:PORT"},
	{regexp.MustCompile(`\d+(\.\d+)?/s\b`), "N/s"},
	{regexp.MustCompile(`(?m)^(bulwark RSS|app RSS|req/s) .*$`), "$1 <sparkline> <value>"},
}

func mask(s string) string {
	for _, m := range masks {
		s = m.re.ReplaceAllString(s, m.repl)
	}
	return s
}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if updateGolden() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s: got\n%s\nwant\n%s", path, got, want)
	}
}

// checkFits reports lines wider than width.
func checkFits(t *testing.T, out string, width int) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(l); n > width {
			t.Errorf("line is %d columns, want at most %d: %q", n, width, l)
		}
	}
}

func TestStatusGolden(t *testing.T) {
	tests := []struct {
		name  string
		snap  func() observe.Snapshot
		extra func(*observe.Server)
	}{
		{"app.golden", adminSnapshot(3, true), func(s *observe.Server) {
			s.AddEvent(observe.Event{Kind: "restart", Reason: "memory"})
		}},
		{"no-app.golden", adminSnapshot(0, false), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, addr := startObserve(t, observe.Options{Token: testToken, Snapshot: tt.snap, Version: "v1.0.0-test"})
			if tt.extra != nil {
				tt.extra(s)
			}
			var out, errOut bytes.Buffer
			err := runStatus(t.Context(), []string{"--admin", addr, "--token", testToken}, &out, &errOut)
			if err != nil {
				t.Fatalf("status: %v (stderr %s)", err, errOut.String())
			}
			checkFits(t, out.String(), 80)
			checkGolden(t, filepath.Join("status", tt.name), mask(out.String()))
		})
	}
}

func TestStatusTokenFromEnv(t *testing.T) {
	_, addr := startObserve(t, observe.Options{Token: testToken, Snapshot: adminSnapshot(1, true)})
	t.Setenv("BULWARK_ADMIN_TOKEN", testToken)
	var out bytes.Buffer
	if err := runStatus(t.Context(), []string{"--admin", addr}, &out, &out); err != nil {
		t.Fatalf("status with the token in BULWARK_ADMIN_TOKEN: %v", err)
	}
	if !strings.Contains(out.String(), "PROCESS") {
		t.Errorf("status output = %q, want the process table", out.String())
	}
}

func TestStatusJSON(t *testing.T) {
	_, addr := startObserve(t, observe.Options{Token: testToken, Snapshot: adminSnapshot(2, true)})
	var out bytes.Buffer
	if err := runStatus(t.Context(), []string{"--admin", addr, "--token", testToken, "--json"}, &out, &out); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	var st observe.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatalf("status --json printed something that is not JSON: %v\n%s", err, out.String())
	}
	if st.Bulwark.PID != 4242 || st.App == nil || len(st.App.Procs) != 2 || st.QueueCap != 100 {
		t.Errorf("status --json = %+v; want bulwark pid 4242, 2 app procs, queue cap 100", st)
	}
	if !strings.Contains(out.String(), "\n  \"bulwark\": {") {
		t.Errorf("status --json is not indented:\n%s", out.String())
	}
}

func TestStatusErrors(t *testing.T) {
	_, addr := startObserve(t, observe.Options{Token: testToken, Snapshot: adminSnapshot(1, true)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now
	isolateAdminEnv(t)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"nothing running", []string{"--admin", closed},
			"no bulwark admin server at " + closed + ": connection refused — is bulwark running? (see [admin] listen)"},
		{"no token", []string{"--admin", addr}, "needs a token: pass --config (its [admin] token), --token or $BULWARK_ADMIN_TOKEN"},
		{"wrong token", []string{"--admin", addr, "--token", "nope"}, "refused the token from --token (401)"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := runStatus(t.Context(), tt.args, &out, &out)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: status %v = %v, want an error containing %q", tt.name, tt.args, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q is more than one line", tt.name, err)
		}
		if out.Len() != 0 {
			t.Errorf("%s: printed %q besides the error", tt.name, out.String())
		}
	}
}

func TestStatusBadFlags(t *testing.T) {
	var out bytes.Buffer
	if err := runStatus(t.Context(), []string{"--bogus"}, &out, &out); err != errUsage {
		t.Errorf("status --bogus = %v, want errUsage", err)
	}
	if !strings.Contains(out.String(), "Usage: bulwark status") {
		t.Errorf("status --bogus printed %q, want the usage", out.String())
	}
}

func TestUptimeAt(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		ago  time.Duration
		want string
	}{
		{0, "0s"}, {45 * time.Second, "45s"}, {12*time.Minute + 5*time.Second, "12m05s"},
		{3*time.Hour + 7*time.Minute, "3h07m"}, {52 * time.Hour, "2d04h"}, {-time.Minute, "0s"},
	}
	for _, tt := range tests {
		if got := uptimeAt(now, now.Add(-tt.ago)); got != tt.want {
			t.Errorf("uptimeAt(now-%v) = %q, want %q", tt.ago, got, tt.want)
		}
	}
	if got := uptimeAt(now, time.Time{}); got != "-" {
		t.Errorf("uptimeAt(zero) = %q, want -", got)
	}
}

func TestFmtBytes(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {23 << 20, "23.0 MiB"}, {3 << 30, "3.0 GiB"},
	}
	for _, tt := range tests {
		if got := fmtBytes(tt.in); got != tt.want {
			t.Errorf("fmtBytes(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFitWidth(t *testing.T) {
	tests := []struct {
		in    string
		width int
		want  string
	}{
		{"short", 10, "short"}, {"exactly10!", 10, "exactly10!"}, {"a bit too long", 10, "a bit too…"},
		{"ünïcödé ✓✓✓", 8, "ünïcödé…"}, {"trailing   ", 8, "trailing"},
	}
	for _, tt := range tests {
		if got := fitWidth(tt.in, tt.width); got != tt.want {
			t.Errorf("fitWidth(%q, %d) = %q, want %q", tt.in, tt.width, got, tt.want)
		}
	}
}

func TestRenderDB(t *testing.T) {
	var b strings.Builder
	line := func(format string, a ...any) { b.WriteString(fmt.Sprintf(format, a...) + "\n") }
	renderDB(line, &observe.DBStatus{Kind: "mysql", Connections: 12, LongestQuerySeconds: 3.21, User: "app",
		AppConnections: 8, AppProcesses: 2, AppBudget: 12,
		Groups: []observe.DBGroup{{User: "app", State: "idle", Count: 6}, {User: "root", State: "idle", Count: 4}, {User: "app", State: "active", Count: 2}}})
	want := "DATABASE     mysql · 12 connections (the probe's left out) · longest query 3.2s\n" +
		"             user app: 8 of 12 (DB_POOL_SIZE + DB_MAX_OVERFLOW 6 × 2 app processes)\n" +
		"             app idle 6 · root idle 4 · app active 2\n"
	if got := b.String(); got != want {
		t.Errorf("renderDB =\n%s\nwant\n%s", got, want)
	}
}

// TestFmtUpstreamsNotReady: the one address of a supervised app that is
// not ready (a crash loop, say) is not shown as if it served.
func TestFmtUpstreamsNotReady(t *testing.T) {
	tests := []struct {
		us   []observe.UpstreamInfo
		want string
	}{
		{[]observe.UpstreamInfo{{Address: "unix:/run/a.sock", Up: true}}, "unix:/run/a.sock"},
		{[]observe.UpstreamInfo{{Address: "unix:/run/b.sock"}}, "unix:/run/b.sock (not ready)"},
		{[]observe.UpstreamInfo{{}}, "none: the app is not ready"},
		{[]observe.UpstreamInfo{{Address: "a:1", Up: true}, {Address: "b:1"}}, "a:1 up · b:1 down"},
	}
	for _, tt := range tests {
		if got := fmtUpstreams(tt.us); got != tt.want {
			t.Errorf("fmtUpstreams(%+v) = %q, want %q", tt.us, got, tt.want)
		}
	}
}

// TestAppMemoryPerWorker: max_memory is per worker in a pool, so the line
// sets the largest worker against it, not the pool's total (which read
// 216 % of a limit no worker was near).
func TestAppMemoryPerWorker(t *testing.T) {
	const mib = 1 << 20
	single := &observe.AppInfo{RSS: 100 * mib, MaxMemory: 150 * mib}
	if got, want := appMemory(single), "app RSS 100.0 MiB of 150.0 MiB max_memory (66%)"; got != want {
		t.Errorf("single app: %q, want %q", got, want)
	}
	pool := &observe.AppInfo{RSS: 324 * mib, MaxMemory: 150 * mib, Workers: []observe.WorkerInfo{
		{RSS: 108 * mib}, {RSS: 110 * mib}, {RSS: 106 * mib},
	}}
	got := appMemory(pool)
	if want := "app RSS 324.0 MiB · worker max 110.0 MiB of 150.0 MiB each (73%)"; got != want {
		t.Errorf("pool: %q, want %q", got, want)
	}
	if utf8.RuneCountInString("             "+got) > 80 {
		t.Errorf("pool line %q is cut at 80 columns", got)
	}
	pool.MaxMemory = 0
	if got, want := appMemory(pool), "app RSS 324.0 MiB · worker max 110.0 MiB · no max_memory"; got != want {
		t.Errorf("pool without a limit: %q, want %q", got, want)
	}
}

// TestRestartsShowCleanExitsOnlyWhenThereWereSome: an app that recycles
// itself (exit 0) shows "exit N"; one that never did keeps the short line.
func TestRestartsShowCleanExitsOnlyWhenThereWereSome(t *testing.T) {
	if got, want := fmtRestarts(map[string]int{"crash": 1}), "crash 1 memory 0 manual 0 reload 0"; got != want {
		t.Errorf("fmtRestarts without exits = %q, want %q", got, want)
	}
	if got, want := fmtRestarts(map[string]int{"exit": 7}), "crash 0 memory 0 manual 0 reload 0 exit 7"; got != want {
		t.Errorf("fmtRestarts with exits = %q, want %q", got, want)
	}
}
