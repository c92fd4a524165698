package front

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"bulwark/internal/httperr"
)

const (
	lingerTestLimit  = 5 << 20  // max_body = "5MiB"
	lingerTestUpload = 30 << 20 // the 30 MB upload of issue 14
)

// limitHandler answers 413 (Bulwark's own, with Connection: close) to a
// body declared over lingerTestLimit without reading it, as the proxy does
// for max_body, and reads any other body.
func limitHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > lingerTestLimit {
			httperr.Write(w, r, &httperr.Error{Status: http.StatusRequestEntityTooLarge, Reason: "body_too_large", Msg: "body over max_body"})
			return
		}
		io.Copy(io.Discard, r.Body)
	})
}

// uploadWithoutExpect sends a POST with a 30 MB body and no Expect, writing
// the whole body before reading the answer, as curl, Python's http.client
// and browsers' fetch do, and returns the answer. A failed write is an
// error, as it is for those clients: they report it and never read.
func uploadWithoutExpect(addr string) (*http.Response, string, error) {
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	head := fmt.Sprintf("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", lingerTestUpload)
	if _, err := io.WriteString(c, head); err != nil {
		return nil, "", fmt.Errorf("write head: %w", err)
	}
	chunk := make([]byte, 64<<10)
	for sent := 0; sent < lingerTestUpload; sent += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			return nil, "", fmt.Errorf("write body after %d bytes: %w", sent, err)
		}
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, "", fmt.Errorf("read answer: %w", err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, "", fmt.Errorf("read answer body: %w", err)
	}
	return res, string(b), nil
}

// TestEarlyAnswerReachesClientStillSending checks lingering close: a client
// that sends a body over the limit without Expect: 100-continue, and reads
// only once it has sent it all, reads the 413 instead of a reset.
func TestEarlyAnswerReachesClientStillSending(t *testing.T) {
	ts := start(t, limitHandler(), true, nil)
	for i := range 10 {
		res, body, err := uploadWithoutExpect(ts.addr)
		if err != nil {
			t.Fatalf("upload %d of 10: %v; want the 413", i+1, err)
		}
		if res.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "(bulwark)") {
			t.Fatalf("upload %d of 10: got %d %q, want Bulwark's 413", i+1, res.StatusCode, body)
		}
	}
}

// TestHeadErrorLingers checks that a refused head (431 here) lingers too:
// the client is still sending the rest of its request.
func TestHeadErrorLingers(t *testing.T) {
	ts := start(t, limitHandler(), true, func(o *Options) { o.MaxHeaderBytes = 1 << 10 })
	c := ts.dial(t, true)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 2<<10)+"\r\nContent-Length: 8388608\r\n\r\n")
	chunk := make([]byte, 64<<10)
	for sent := 0; sent < 8<<20; sent += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			t.Fatalf("write body after %d bytes: %v; want the 431", sent, err)
		}
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("got %d, want 431", res.StatusCode)
	}
}

// TestShutdownEndsLingering checks that Shutdown does not wait out the
// lingering of a client that keeps sending after its 413.
func TestShutdownEndsLingering(t *testing.T) {
	ts := start(t, limitHandler(), true, nil)
	c := ts.dial(t, true)
	fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", lingerTestUpload)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(res.Body)
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the 413: got %v, want EOF (the server half-closed)", err)
	}
	// Keep sending, a little at a time: every read would otherwise wait
	// lingerTimeout again.
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range 1000 {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write(make([]byte, 1024)); err != nil {
					return
				}
			}
		}
	}()
	defer func() { close(stop); <-sent }()
	ctx, cancel := context.WithTimeout(context.Background(), lingerTimeout-time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v; want the lingering connection closed within the shutdown grace", err)
	}
}

// TestCurlUploadWithoutExpectGets413 is issue 14's reproduction: curl over
// HTTP/1.1 without Expect uploading 30 MB against a 5 MiB limit.
func TestCurlUploadWithoutExpectGets413(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl not found")
		}
		t.Skip("curl not installed and CI unset")
	}
	ts := start(t, limitHandler(), true, nil)
	file := filepath.Join(t.TempDir(), "30mb")
	if err := os.WriteFile(file, make([]byte, lingerTestUpload), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, curl, "-sSk", "--http1.1", "-H", "Expect:",
			"--data-binary", "@"+file, "-w", "\n%{http_code}", "https://"+ts.addr+"/up").CombinedOutput()
		cancel()
		if err != nil || !bytes.HasSuffix(out, []byte("\n413")) || !bytes.Contains(out, []byte("(bulwark)")) {
			t.Fatalf("curl %d: %v\n%s\nwant Bulwark's 413", i+1, err, out)
		}
	}
}
