package observe

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// requireTool skips the test when path is missing and CI is unset; under CI
// a missing tool is a failure, since .ci/run installs it.
func requireTool(t *testing.T, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if os.Getenv("CI") == "" {
		t.Skipf("%s is missing (apt-get install %s); skipping because CI is unset", path, pkg)
	}
	t.Fatalf("%s is missing under CI (apt-get install %s)", path, pkg)
}

// changingSnapshot is a Snapshot func whose memory and request counters
// move on every call, like a live server's.
func changingSnapshot() func() Snapshot {
	var n atomic.Int64
	base := fakeSnapshot()
	return func() Snapshot {
		i := n.Add(1)
		s := base()
		s.Bulwark.RSS += (i % 7) << 20
		s.App.RSS += (i % 11) << 21
		s.RequestsTotal = uint64(i * i)
		s.LatencyP50 = time.Duration(10+i%5) * time.Millisecond
		s.InFlight = int(i % 4)
		s.Upstreams = []UpstreamInfo{{Address: "10.0.0.2:8000", Up: true}, {Address: "10.0.0.3:8000"}}
		s.Certs = testCerts(time.Now())
		s.App.Workers = []WorkerInfo{
			{Index: 0, PID: 7000, State: "running", RSS: 70 << 20, PSS: 55 << 20, Served: i, Started: time.Now().Add(-time.Minute)},
			{Index: 1, PID: 7001, State: "running", RSS: 71 << 20, PSS: 56 << 20, Served: 2 * i, InFlight: 1,
				Started: time.Now().Add(-2 * time.Minute), LastRecycle: "max_requests"},
		}
		return s
	}
}

// startAdmin runs a Server on a loopback port until the test ends; prepare,
// if not nil, runs before the server starts.
func startAdmin(t *testing.T, o Options, prepare func(*Server)) *Server {
	t.Helper()
	o.Listen = "127.0.0.1:0"
	s := newTestServer(t, o)
	if prepare != nil {
		prepare(s)
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
	return s
}

func TestDashboardInBrowser(t *testing.T) {
	requireTool(t, chromiumPath, "chromium")
	s := startAdmin(t, Options{Token: "tok-123", Snapshot: changingSnapshot(), Version: "v0.0.1-test"}, func(s *Server) {
		s.AddEvent(Event{At: time.Now().Add(-20 * time.Second), Kind: "restart", Reason: "memory", Detail: "rss above max_memory"})
		s.AddEvent(Event{At: time.Now().Add(-5 * time.Second), Kind: "restart", Reason: "crash", Detail: "exit status 1"})
		// Some history before the page loads, so the charts have lines.
		now := time.Now()
		for i := 30; i > 0; i-- {
			s.sample(now.Add(-time.Duration(i) * time.Second))
		}
	})

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, tcancel := context.WithTimeout(ctx, 45*time.Second)
	var pid int
	t.Cleanup(func() {
		tcancel()
		cancel()
		acancel()
		if pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL) // normally gone already; ESRCH then
		}
	})

	var mu sync.Mutex
	var problems []string
	err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning ||
				ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				problems = append(problems, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			problems = append(problems, "exception: "+msg)
		case *cdplog.EventEntryAdded:
			// The 401s before the token is entered are expected; a CSP
			// violation or any other error is not.
			e := ev.Entry
			if e.Level == cdplog.EntryLevelError && !strings.Contains(e.Text, "401") {
				problems = append(problems, fmt.Sprintf("log %s: %s", e.Source, e.Text))
			}
		}
	})
	if err != nil {
		t.Fatalf("starting the browser: %v", err)
	}
	if b := chromedp.FromContext(ctx).Browser; b != nil && b.Process() != nil {
		pid = b.Process().Pid
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enabling the log domain: %v", err)
	}

	url := "http://" + s.Addr() + "/"
	// No token yet: the page asks for it.
	steps := []struct {
		name string
		a    chromedp.Action[chromedp.Void]
	}{
		{"navigate", chromedp.Navigate(url)},
		{"wait for the token form", chromedp.WaitVisible(chromedp.ID("ask-token"))},
		{"type the token", chromedp.SendKeys(chromedp.ID("ask-token"), "tok-123")},
		{"press the button", chromedp.Click(chromedp.CSS("#ask-form button"))},
		{"wait for the form to go", chromedp.WaitNotVisible(chromedp.ID("ask-token"))},
	}
	for _, st := range steps {
		if err := chromedp.Do(ctx, st.a); err != nil {
			t.Fatalf("dashboard: %s: %v", st.name, err)
		}
	}
	updates, err := chromedp.Run(ctx, chromedp.Poll[int](`window.bulwarkUpdates >= 3 ? window.bulwarkUpdates : 0`,
		chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil {
		t.Fatalf("waiting for 3 updates of the page: %v", err)
	}
	points, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]int](`window.bulwarkPoints`))
	if err != nil {
		t.Fatalf("reading window.bulwarkPoints: %v", err)
	}
	for _, name := range []string{"memory", "rps", "latency", "conns"} {
		if points[name] < 30 {
			t.Errorf("chart %s drew %d points, want at least 30 (one per sample, per series)", name, points[name])
		}
	}
	// After the first poll the page asks only for what it does not have.
	lastURL, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.bulwarkLastURL`))
	if err != nil || !strings.HasPrefix(lastURL, "/api/history?since=") {
		t.Errorf("last history request = %q, %v; want /api/history?since=...", lastURL, err)
	}
	attr, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("c-memory"), "data-points"))
	if err != nil || !attr.Exists || attr.Value == "0" {
		t.Errorf("memory canvas data-points = %+v, %v; want a count", attr, err)
	}
	stored, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem('bulwark-admin-token')`))
	if err != nil || stored != "tok-123" {
		t.Errorf("sessionStorage token = %q, %v; want the one entered", stored, err)
	}
	cards, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("cards")))
	if err != nil {
		t.Fatalf("reading the cards: %v", err)
	}
	if !strings.Contains(cards, "1 / 2 up") || !strings.Contains(cards, "down: 10.0.0.3:8000") {
		t.Errorf("cards = %q, want the app addresses card: 1 / 2 up, down: 10.0.0.3:8000", cards)
	}
	workers, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("workers")))
	if err != nil {
		t.Fatalf("reading the workers: %v", err)
	}
	for _, want := range []string{"7000", "7001", "70.0 MiB", "56.0 MiB", "max_requests", "2m"} {
		if !strings.Contains(workers, want) {
			t.Errorf("workers table = %q, want %q in it", workers, want)
		}
	}
	events, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("events")))
	if err != nil {
		t.Fatalf("reading events: %v", err)
	}
	if !strings.Contains(events, "memory") || !strings.Contains(events, "crash") {
		t.Errorf("events list = %q, want the memory and crash restarts", events)
	}

	certs, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("certs")))
	if err != nil {
		t.Fatalf("reading the certificates: %v", err)
	}
	// The page's clock is the document's time, a moment after the
	// snapshot's: a minute either way is allowed.
	for _, want := range []string{
		`a\.example — expires in (59d23h|60d0h) · renewed (1h59m|2h0[01]m) ago · next attempt in (29d23h|30d0h)`,
		`b\.example — no certificate yet · not renewed by this process · next attempt in 1m[23]\ds`,
		`last error (29|30|31)s ago: urn:ietf:params:acme:error:connection: refused`} {
		if !regexp.MustCompile(want).MatchString(certs) {
			t.Errorf("certificates list = %q, want it to match %q", certs, want)
		}
	}

	shots := os.Getenv("BULWARK_SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	}
	for _, vp := range []struct {
		name string
		w, h int64
	}{{"desktop", 1200, 900}, {"phone", 390, 1500}} {
		err := chromedp.Do(ctx,
			chromedp.EmulateViewport(vp.w, vp.h),
			chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
				_, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`window.bulwarkUpdates >= %d`, updates+2),
					chromedp.WithPollingTimeout(10*time.Second)))
				return err
			}),
		)
		if err != nil {
			t.Fatalf("viewport %s: %v", vp.name, err)
		}
		updates += 2
		overflow, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth - window.innerWidth`))
		if err != nil || overflow > 0 {
			t.Errorf("%s (%d px wide): page is %d px wider than the viewport (%v); want no sideways scrolling",
				vp.name, vp.w, overflow, err)
		}
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot %s: %v", vp.name, err)
		}
		path := filepath.Join(shots, "dashboard-"+vp.name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatalf("writing screenshot: %v", err)
		}
		t.Logf("screenshot: %s", path)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("browser reported %s", p)
	}
}
