package spool

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// asgiApp reports what the app saw of a request: its Content-Length and
// Transfer-Encoding headers and the body's length.
const asgiApp = `
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    headers = dict(scope["headers"])
    n = 0
    while True:
        msg = await receive()
        n += len(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    out = "%s|%s|%d" % (headers.get(b"content-length", b"").decode(),
                        headers.get(b"transfer-encoding", b"").decode(), n)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": out.encode()})
`

// startUvicorn runs the ASGI app above under Debian's uvicorn on a loopback
// socket handed over as fd 3, and returns its URL. The process is killed by
// PID at cleanup.
func startUvicorn(t *testing.T) *url.URL {
	t.Helper()
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import uvicorn").Run(); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s -m uvicorn is not available (%v); set CI to make this a failure", python, err)
		}
		t.Fatalf("%s -m uvicorn is not available: %v", python, err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "echoapp.py"), []byte(asgiApp), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lf, err := ln.(*net.TCPListener).File()
	ln.Close() // the dup in lf keeps the socket listening
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	cmd := exec.Command(python, "-m", "uvicorn", "echoapp:app", "--fd", "3", "--app-dir", dir, "--log-level", "warning")
	cmd.ExtraFiles = []*os.File{lf}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		if p, err := os.FindProcess(pid); err == nil {
			p.Kill()
		}
		cmd.Wait()
	})
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}
}

// TestRequests_Uvicorn: a chunked upload spooled by Requests reaches a real
// uvicorn app with a Content-Length and no Transfer-Encoding.
func TestRequests_Uvicorn(t *testing.T) {
	app := startUvicorn(t)
	s := newTestSpool(t, Options{BufferRequests: true, BufferResponses: true})
	proxy := httputil.NewSingleHostReverseProxy(app)
	proxy.Transport = &http.Transport{ResponseHeaderTimeout: waitLimit}
	srv, done := serve(t, s.Responses(s.Requests(proxy)))
	const size = 1 << 20
	var resp *http.Response
	var err error
	for range 50 { // uvicorn accepts once it has imported the app
		resp, err = srv.Client().Post(srv.URL, "application/octet-stream", hideLength(pattern(size)))
		if err == nil && resp.StatusCode == http.StatusOK {
			break
		}
		if err == nil {
			resp.Body.Close()
			waitDone(t, done, "retry")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("POST through the spool to uvicorn: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	waitDone(t, done, "uvicorn upload")
	if want := fmt.Sprintf("%d||%d", size, size); err != nil || !bytes.Equal(got, []byte(want)) {
		t.Errorf("app saw %q (status %d, err %v), want Content-Length|Transfer-Encoding|bytes = %q", got, resp.StatusCode, err, want)
	}
	assertClean(t, s)
}
