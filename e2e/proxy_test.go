package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const baseConfig = `
[listen]
https = "%HTTPS%"
[admin]
listen = "%ADMIN%"
[log]
access = "stderr"
`

func withUpstream(addr string, extra string) string {
	return baseConfig + "\n[upstream]\naddress = \"" + addr + "\"\n" + extra
}

type echoed struct {
	Headers map[string]string `json:"headers"`
	Client  string            `json:"client"`
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Query   string            `json:"query"`
}

// TestUvicornBehindBulwark: HTTP/1.1 and HTTP/2 clients reach a real
// FastAPI app through Bulwark, with the guide's proxy headers set.
func TestUvicornBehindBulwark(t *testing.T) {
	up, _ := startUvicorn(t)
	in := startBulwark(t, withUpstream(up, ""), nil)
	for _, h2 := range []bool{false, true} {
		c := in.client(h2)
		req, _ := http.NewRequest("GET", in.url("/headers?a=1"), nil)
		req.Header.Set("X-Forwarded-For", "6.6.6.6") // spoofed: not from a trusted proxy
		// HTTP/2 has no Connection header.
		if !h2 {
			req.Header.Set("Connection", "keep-alive, X-Secret")
			req.Header.Set("X-Secret", "hop-by-hop")
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		wantProto := map[bool]int{false: 1, true: 2}[h2]
		if res.ProtoMajor != wantProto || res.StatusCode != 200 {
			t.Fatalf("h2=%v: got %s %d", h2, res.Proto, res.StatusCode)
		}
		var e echoed
		if err := json.Unmarshal([]byte(readAll(t, res)), &e); err != nil {
			t.Fatal(err)
		}
		h := e.Headers
		checks := map[string]string{
			"host":              in.https,
			"x-real-ip":         "127.0.0.1",
			"x-forwarded-for":   "127.0.0.1",
			"x-forwarded-proto": "https",
			"x-forwarded-host":  in.https,
		}
		for k, want := range checks {
			if h[k] != want {
				t.Errorf("h2=%v: app saw %s = %q, want %q", h2, k, h[k], want)
			}
		}
		if _, ok := h["x-secret"]; ok {
			t.Errorf("h2=%v: a header named in Connection reached the app", h2)
		}
		if e.Query != "a=1" || e.Path != "/headers" {
			t.Errorf("h2=%v: path/query %q %q", h2, e.Path, e.Query)
		}
	}
}

func TestUploadSpooledAndBodyLimit(t *testing.T) {
	up, _ := startUvicorn(t)
	in := startBulwark(t, withUpstream(up, "")+"\n[limits]\nmax_body = \"2MiB\"\nbody_buffer = \"64KiB\"\n", nil)
	c := in.client(false)
	body := make([]byte, 2<<20) // exactly max_body
	rand.Read(body)
	sum := sha256.Sum256(body)
	for _, chunked := range []bool{false, true} {
		var r io.Reader = bytes.NewReader(body)
		if chunked {
			r = io.MultiReader(r) // hides the length: sent chunked
		}
		req, _ := http.NewRequest("POST", in.url("/upload"), r)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Len              int     `json:"len"`
			Sha              string  `json:"sha256"`
			ContentLength    *string `json:"content_length"`
			TransferEncoding *string `json:"transfer_encoding"`
		}
		json.Unmarshal([]byte(readAll(t, res)), &got)
		if res.StatusCode != 200 || got.Len != len(body) || got.Sha != hex.EncodeToString(sum[:]) {
			t.Errorf("chunked=%v: got %d len=%d sha=%s", chunked, res.StatusCode, got.Len, got.Sha)
		}
		if got.ContentLength == nil || *got.ContentLength != fmt.Sprint(len(body)) || got.TransferEncoding != nil {
			t.Errorf("chunked=%v: the app did not get a spooled body with Content-Length: %+v", chunked, got)
		}
	}
	over := append(body, 'x')
	for _, chunked := range []bool{false, true} {
		var r io.Reader = bytes.NewReader(over)
		if chunked {
			r = io.MultiReader(r)
		}
		req, _ := http.NewRequest("POST", in.url("/upload"), r)
		res, err := c.Do(req)
		if err != nil {
			// The client may see the connection close while it still
			// sends; the refusal is then checked in the metrics below.
			t.Logf("chunked=%v: client error after the 413 (connection closed while sending): %v", chunked, err)
			continue
		}
		got := readAll(t, res)
		if res.StatusCode != 413 || !strings.Contains(got, "bulwark") {
			t.Errorf("chunked=%v: one byte over max_body: got %d %q, want 413 from bulwark", chunked, res.StatusCode, got)
		}
	}
	// Both bodies were refused as too large, whether or not the client
	// read the answer.
	const refused = `bulwark_refused_total{status="413",reason="body_too_large"}`
	waitFor(t, 5*time.Second, "two body_too_large refusals in /metrics", func() bool { return scrape(t, in.admin)[refused] >= 2 })
}

func TestQueueFullAnswers503WithRetryAfter(t *testing.T) {
	up, _ := startUvicorn(t)
	in := startBulwark(t, withUpstream(up, "max_concurrency = 1\nqueue = 0\n"), nil)
	c := in.client(false)
	started := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		close(started)
		res, err := c.Get(in.url("/slow?s=3"))
		if err == nil {
			readAll(t, res)
		}
	}()
	<-started
	waitFor(t, 10*time.Second, "the slow request to hold the only slot", func() bool {
		return in.status(t).InFlight == 1
	})
	req, _ := http.NewRequest("GET", in.url("/"), nil)
	req.Header.Set("Accept", "application/json")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, res)
	if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" || !strings.Contains(body, `"by":"bulwark"`) {
		t.Errorf("got %d Retry-After=%q %q; want 503 with Retry-After and a JSON body from bulwark", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
	wg.Wait()
}

func TestAppUnreachable502AndTooSlow504(t *testing.T) {
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	in := startBulwark(t, withUpstream(dead, ""), nil)
	res, err := in.client(false).Get(in.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, res); res.StatusCode != 502 || !strings.Contains(body, "bulwark") {
		t.Errorf("app down: got %d %q, want 502 from bulwark", res.StatusCode, body)
	}

	up, _ := startUvicorn(t)
	slow := startBulwark(t, withUpstream(up, "read_timeout = \"1s\"\n"), nil)
	res, err = slow.client(true).Get(slow.url("/slow?s=4"))
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, res); res.StatusCode != 504 {
		t.Errorf("slow app: got %d %q, want 504", res.StatusCode, body)
	}
}

// TestStreamsReachClientAtOnce: an SSE event and an X-Accel-Buffering: no
// chunk arrive while the app is still inside a 20 s pause, so they cannot
// have been held in a buffer until the end.
func TestStreamsReachClientAtOnce(t *testing.T) {
	up, _ := startUvicorn(t)
	in := startBulwark(t, withUpstream(up, ""), nil)
	for _, path := range []string{"/sse?n=2&gap=20", "/stream-nobuffer?n=2&gap=20"} {
		for _, h2 := range []bool{false, true} {
			c := in.client(h2)
			c.Timeout = 0
			res, err := c.Get(in.url(path))
			if err != nil {
				t.Fatal(err)
			}
			if res.Header.Get("X-Accel-Buffering") != "" {
				t.Errorf("%s: X-Accel-Buffering passed on to the client", path)
			}
			got := make(chan string, 1)
			go func() {
				line, _ := lineReader(res.Body).ReadString('\n')
				got <- line
			}()
			select {
			case line := <-got:
				if !strings.Contains(line, "0") {
					t.Errorf("%s h2=%v: first line %q", path, h2, line)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("%s h2=%v: the first event did not arrive while the app paused", path, h2)
			}
			res.Body.Close()
		}
	}
}

func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	up, _ := startUvicorn(t)
	in := startBulwark(t, withUpstream(up, ""), nil)
	c := in.client(false)
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		res, err := c.Get(in.url("/slow?s=2"))
		if err != nil {
			done <- result{err: err}
			return
		}
		readAll(t, res)
		done <- result{code: res.StatusCode}
	}()
	waitFor(t, 10*time.Second, "the request to be in flight", func() bool {
		return in.status(t).InFlight == 1
	})
	if err := in.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.code != 200 {
		t.Errorf("in-flight request during SIGTERM: %d %v, want 200", r.code, r.err)
	}
	select {
	case <-in.done:
	case <-time.After(20 * time.Second):
		t.Fatal("bulwark did not exit after SIGTERM")
	}
	if in.exit != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", in.exit)
	}
}

func TestRedirectListener(t *testing.T) {
	up := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := strings.Replace(withUpstream(up, ""), "[listen]\n", "[listen]\nhttp = \"%HTTP%\"\n", 1)
	in2 := startBulwark(t, cfg, nil)
	waitListening(t, in2.proc, in2.http)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Get("http://" + in2.http + "/a/b?c=d")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, res)
	_, port, _ := strings.Cut(in2.https, ":")
	if want := "https://127.0.0.1:" + port + "/a/b?c=d"; res.StatusCode != 308 || res.Header.Get("Location") != want {
		t.Errorf("got %d %q, want 308 to %q", res.StatusCode, res.Header.Get("Location"), want)
	}
}

func TestCheckReportsEveryProblemWithFileAndLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.toml")
	os.WriteFile(path, []byte("[listen]\nbacklog = -5\nkeepalive_timeout = 5\n\n[upstream]\nadress = \"x\"\n"), 0o600)
	out, err := exec.Command(bulwarkBin, "check", "--config", path).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("check on a bad file: %v, want exit 1\n%s", err, out)
	}
	for _, want := range []string{"bad.toml:2: listen.backlog", "bad.toml:3: listen.keepalive_timeout", "bad.toml:6: upstream.adress", "address"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
}

func TestCheckLoadsCertificates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "b.toml")
	os.WriteFile(path, []byte("[tls]\ncert = \""+dir+"/missing.pem\"\nkey = \""+dir+"/missing-key.pem\"\n"), 0o600)
	out, err := exec.Command(bulwarkBin, "check", "--config", path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "missing.pem") {
		t.Errorf("check with a missing certificate: %v\n%s\nwant an error naming the file", err, out)
	}
}

// TestNoConfigDefaults: `bulwark run -- CMD` with no file serves HTTPS with a
// generated certificate kept in the state directory, and supervises CMD.
func TestNoConfigDefaults(t *testing.T) {
	requireUvicorn(t)
	appPort := freePort(t)
	https := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	state := t.TempDir()
	wd, _ := os.Getwd()
	p := startProc(t, t.TempDir(), []string{
		"XDG_STATE_HOME=" + state,
		"BULWARK_LISTEN_HTTPS=" + https,
		"BULWARK_ADMIN_LISTEN=",
		fmt.Sprintf("BULWARK_UPSTREAM_ADDRESS=127.0.0.1:%d", appPort),
		"APP_GREETING=hi",
	}, bulwarkBin, "run", "--", python, "-m", "uvicorn", "app:app", "--app-dir", filepath.Join(wd, "testdata"),
		"--host", "127.0.0.1", "--port", fmt.Sprint(appPort))
	waitListening(t, p, https)
	in := &instance{proc: p, https: https}
	in.roots = certPool(t, filepath.Join(state, "bulwark"))
	res, err := in.client(true).Get(in.url("/env"))
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]*string
	json.Unmarshal([]byte(readAll(t, res)), &env)
	if res.StatusCode != 200 {
		t.Fatalf("got %d", res.StatusCode)
	}
	for _, k := range []string{"DB_POOL_SIZE", "DB_MAX_OVERFLOW", "DB_POOL_TIMEOUT", "DB_POOL_RECYCLE", "PYTHONUNBUFFERED", "APP_GREETING"} {
		if env[k] == nil {
			t.Errorf("the app's environment lacks %s", k)
		}
	}
	if env["PYTHONHASHSEED"] != nil {
		t.Errorf("PYTHONHASHSEED set to %q", *env["PYTHONHASHSEED"])
	}
}

// TestMemoryPressureSheds: while an upload held in spool memory takes
// Bulwark's heap past 90 % of its memory limit, new requests are shed with
// 503 + Retry-After instead of growing the heap; once it is gone, they pass.
func TestMemoryPressureSheds(t *testing.T) {
	up, _ := startUvicorn(t)
	in := startBulwark(t, withUpstream(up, "")+`
[memory]
limit = "24MiB"
[limits]
body_buffer = "40MiB"
spool_memory = "40MiB"
max_body = "40MiB"
`, nil)
	c, err := tls.Dial("tcp", in.https, &tls.Config{RootCAs: in.roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	// 30 MB announced, 25 MB sent, then the client stalls: the spool holds
	// the 25 MB in memory while it waits for the rest.
	fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n", 30<<20)
	chunk := bytes.Repeat([]byte("m"), 1<<20)
	for i := 0; i < 25; i++ {
		if _, err := c.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	client := in.client(false)
	var last *http.Response
	waitFor(t, 15*time.Second, "a request shed for memory", func() bool {
		res, err := client.Get(in.url("/"))
		if err != nil {
			return false
		}
		readAll(t, res)
		last = res
		return res.StatusCode == 503
	})
	if last.Header.Get("X-Bulwark-Error") != "memory" || last.Header.Get("Retry-After") == "" {
		t.Errorf("got 503 reason=%q Retry-After=%q; want reason memory with Retry-After", last.Header.Get("X-Bulwark-Error"), last.Header.Get("Retry-After"))
	}
	c.Close() // the upload is abandoned: its spool memory is freed
	waitFor(t, 20*time.Second, "requests to pass again", func() bool {
		res, err := client.Get(in.url("/"))
		if err != nil {
			return false
		}
		readAll(t, res)
		return res.StatusCode == 200
	})
}
