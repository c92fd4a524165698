package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// requireChromium skips the test when Chromium is missing and CI is unset.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err == nil {
		return
	}
	if os.Getenv("CI") == "" {
		t.Skipf("%s is missing (apt-get install chromium); skipping because CI is unset", chromiumPath)
	}
	t.Fatalf("%s is missing under CI (apt-get install chromium)", chromiumPath)
}

// methodLog is an app that records the methods it sees.
type methodLog struct {
	mu      sync.Mutex
	methods []string
}

func (m *methodLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.methods = append(m.methods, r.Method+" "+r.URL.Path)
	m.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"method":%q,"auth":%q}`, r.Method, r.Header.Get("Authorization"))
}

func (m *methodLog) seen() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.methods...)
}

// corsPage is a page that, loaded with ?target=URL, PUTs JSON to URL with
// credentials and an Authorization header (which needs a preflight) and
// leaves the answer, or the error, in window.corsResult.
const corsPage = `<!doctype html><title>cors</title><script>
const target = new URLSearchParams(location.search).get("target");
fetch(target, {method: "PUT", credentials: "include",
  headers: {"Content-Type": "application/json", "Authorization": "Bearer t0k"}, body: "{}"})
  .then(r => r.text()).then(t => { window.corsResult = "ok " + t; })
  .catch(e => { window.corsResult = "error " + e; });
</script>`

// TestCORSPreflightInBrowser: a page on one origin fetches from Bulwark's
// origin with credentials; Bulwark answers the preflight itself (the app
// never sees an OPTIONS) and the browser accepts the actual answer. A page
// on an origin not in cors.origins is refused by the browser.
func TestCORSPreflightInBrowser(t *testing.T) {
	requireChromium(t)
	pageHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(corsPage))
	})
	allowed := httptest.NewServer(pageHandler)
	defer allowed.Close()
	other := httptest.NewServer(pageHandler)
	defer other.Close()
	app := &methodLog{}
	up := httptest.NewServer(app)
	defer up.Close()

	cfg := withUpstream(strings.TrimPrefix(up.URL, "http://"), "") + fmt.Sprintf(`
[cors]
origins = [%q]
methods = ["GET", "POST", "PUT"]
headers = ["Content-Type", "Authorization"]
credentials = true
max_age = "10m"
`, allowed.URL)
	in := startBulwark(t, cfg, nil)

	ctx := browser(t)
	target := url.QueryEscape(in.url("/api/data"))
	got := corsFetch(t, ctx, allowed.URL+"/?target="+target)
	if want := `ok {"method":"PUT","auth":"Bearer t0k"}`; got != want {
		t.Errorf("fetch from the allowed origin = %q; want %q", got, want)
	}
	got = corsFetch(t, ctx, other.URL+"/?target="+target)
	if !strings.HasPrefix(got, "error ") {
		t.Errorf("fetch from an origin not allowed = %q; want a browser error", got)
	}
	for _, m := range app.seen() {
		if strings.HasPrefix(m, "OPTIONS") {
			t.Errorf("the app saw %q; preflights must be answered by Bulwark", m)
		}
	}
	if seen := app.seen(); len(seen) != 1 || seen[0] != "PUT /api/data" {
		t.Errorf("app saw %q; want the allowed origin's PUT alone", seen)
	}
}

// browser starts a headless Chromium for the test that trusts any
// certificate (Bulwark's is a self-signed development one).
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, tcancel := context.WithTimeout(ctx, 60*time.Second)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting the browser: %v", err)
	}
	pid := 0
	if b := chromedp.FromContext(ctx).Browser; b != nil && b.Process() != nil {
		pid = b.Process().Pid
	}
	t.Cleanup(func() {
		tcancel()
		cancel()
		acancel()
		if pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL) // normally gone already; ESRCH then
		}
	})
	return ctx
}

// corsFetch loads page and returns window.corsResult once the fetch ended.
func corsFetch(t *testing.T, ctx context.Context, page string) string {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("navigate %s: %v", page, err)
	}
	res, err := chromedp.Run(ctx, chromedp.Poll[string](`window.corsResult || ""`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		t.Fatalf("waiting for the fetch from %s: %v", page, err)
	}
	return res
}
