package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRouteMaxBodyAllowsUpload: a [[route]]'s max_body lets an upload
// through that limits.max_body refuses on any other path, over HTTP/1.1
// and HTTP/2; `check` shows the route's effective rules.
func TestRouteMaxBodyAllowsUpload(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "got %d %v", n, err)
	}))
	defer up.Close()
	in := startBulwark(t, withUpstream(strings.TrimPrefix(up.URL, "http://"), "")+`
[limits]
max_body = "1MiB"

[[route]]
path = "/api/upload/"
max_body = "8MiB"
`, nil)
	const size = 3 << 20
	body := bytes.Repeat([]byte("u"), size)
	for _, h2 := range []bool{false, true} {
		c := in.client(h2)
		post := func(path string) (int, string) {
			t.Helper()
			res, err := c.Post(in.url(path), "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				t.Fatalf("POST %s: %v", path, err)
			}
			return res.StatusCode, readAll(t, res)
		}
		if code, got := post("/api/upload/big.bin"); code != 200 || got != fmt.Sprintf("got %d <nil>", size) {
			t.Errorf("h2 %v: 3MiB under the route = %d %q; want 200 and the whole body at the app", h2, code, got)
		}
		if code, _ := post("/api/other"); code != http.StatusRequestEntityTooLarge {
			t.Errorf("h2 %v: 3MiB elsewhere = %d; want 413 (limits.max_body 1MiB)", h2, code)
		}
	}
	check := exec.Command(bulwarkBin, "check", "--config", filepath.Join(in.dir, "bulwark.toml"))
	check.Env = append(os.Environ(), "XDG_STATE_HOME="+filepath.Join(in.dir, "state"))
	out, err := check.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "# effective: max_body = 8MiB") {
		t.Errorf("bulwark check: %v\n%s\nwant the route's effective max_body", err, out)
	}
}

// TestRouteReadTimeoutSlowUpload: a client that uploads to a real uvicorn
// app in pieces, pausing longer than upstream.read_timeout between them,
// is cut off (504) where the global timeout applies, and gets through
// under a [[route]] whose read_timeout is longer. The bodies stream to
// the app (buffer_requests = false), so the app, which answers only once
// the body has ended, is silent for each pause.
func TestRouteReadTimeoutSlowUpload(t *testing.T) {
	addr, _ := startUvicorn(t)
	in := startBulwark(t, withUpstream(addr, `read_timeout = "1s"
[limits]
buffer_requests = false

[[route]]
path = "/upload"
read_timeout = "5s"
`), nil)
	c := in.client(false)
	const pieces, pause = 3, 1500 * time.Millisecond
	upload := func(path string) (int, string) {
		t.Helper()
		pr, pw := io.Pipe()
		go func() { // the slow client: this goroutine ends with the pipe
			for i := range pieces {
				if i > 0 {
					time.Sleep(pause)
				}
				if _, err := pw.Write(bytes.Repeat([]byte("s"), 1000)); err != nil {
					return // the request failed: the reader is gone
				}
			}
			pw.Close()
		}()
		res, err := c.Post(in.url(path), "application/octet-stream", pr)
		pr.CloseWithError(io.ErrClosedPipe) // unblocks the writer if the request ended early
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		return res.StatusCode, readAll(t, res)
	}
	if code, body := upload("/upload"); code != 200 || !strings.Contains(body, `"len":3000`) {
		t.Errorf("slow upload under the route (read_timeout 5s) = %d %q; want 200 with all 3000 bytes at the app", code, body)
	}
	if code, body := upload("/bulk/upload"); code != http.StatusGatewayTimeout {
		t.Errorf("slow upload elsewhere (upstream.read_timeout 1s) = %d %q; want 504", code, body)
	}
}
