package proxy

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const fastAPIApp = `
import asyncio
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

app = FastAPI()

@app.get("/headers")
async def headers(request: Request):
    return {"headers": dict(request.headers), "query": str(request.url.query)}

@app.post("/echo")
async def echo(request: Request):
    body = await request.body()
    return {"len": len(body)}

@app.get("/sse")
async def sse():
    async def gen():
        for i in range(3):
            yield f"data: {i}\n\n"
            await asyncio.sleep(0.05)
    return StreamingResponse(gen(), media_type="text/event-stream")
`

// startUvicorn runs the FastAPI app above under Debian's uvicorn on a unix
// socket and returns the socket path. It skips when uvicorn is missing,
// unless CI is set.
func startUvicorn(t *testing.T) string {
	t.Helper()
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import uvicorn, fastapi").Run(); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s with uvicorn and fastapi is not available (%v); install python3-uvicorn python3-fastapi", python, err)
		}
		t.Fatalf("%s with uvicorn and fastapi is required when CI is set: %v", python, err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(fastAPIApp), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "app.sock")
	cmd := exec.Command(python, "-m", "uvicorn", "app:app", "--uds", sock, "--log-level", "warning")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			return sock
		}
		select {
		case <-exited:
			t.Fatalf("uvicorn exited before listening")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("uvicorn did not listen on %s within 15s: %v", sock, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUvicornApp(t *testing.T) {
	sock := startUvicorn(t)
	p, set := newTestProxy(t, "unix:"+sock, nil)
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)

	// Headers as the guide's nginx block sets them.
	req, _ := http.NewRequest("GET", front.URL+"/headers?a=1;b=2", nil)
	req.Host = "shop.example"
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Headers map[string]string
		Query   string
	}
	err = json.NewDecoder(res.Body).Decode(&got)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("GET /headers: %d, %v", res.StatusCode, err)
	}
	want := map[string]string{
		"host":              "shop.example",
		"x-forwarded-for":   "127.0.0.1",
		"x-real-ip":         "127.0.0.1",
		"x-forwarded-proto": "http",
		"x-forwarded-host":  "shop.example",
	}
	for k, v := range want {
		if got.Headers[k] != v {
			t.Errorf("uvicorn saw %s = %q, want %q", k, got.Headers[k], v)
		}
	}
	if got.Query != "a=1;b=2" {
		t.Errorf("uvicorn saw query %q, want %q", got.Query, "a=1;b=2")
	}

	// A body, over the pooled connection.
	body := strings.Repeat("x", 200<<10)
	for range 3 {
		res, err := http.Post(front.URL+"/echo", "application/octet-stream", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var echo struct{ Len int }
		err = json.NewDecoder(res.Body).Decode(&echo)
		res.Body.Close()
		if err != nil || echo.Len != len(body) {
			t.Errorf("POST /echo: uvicorn got %d bytes (%v), want %d", echo.Len, err, len(body))
		}
	}

	// Server-sent events, in order.
	res, err = http.Get(front.URL + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	var events []string
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			events = append(events, line)
		}
	}
	if strings.Join(events, ",") != "data: 0,data: 1,data: 2" {
		t.Errorf("events = %q, want data: 0..2", events)
	}
	if text := metricsText(set); !strings.Contains(text, `bulwark_upstream_requests_total{code_class="2xx"} 5`) {
		t.Errorf("metrics do not count 5 answers:\n%s", text)
	}
}
