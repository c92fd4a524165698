package e2e

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// compressApp answers each path with a type and size, and /events with an
// SSE stream that stays open until release is closed.
func compressApp(release <-chan struct{}) http.Handler {
	bigJSON := strings.Repeat(`{"id":1,"name":"bulwark"},`, 400)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		switch r.URL.Path {
		case "/big.json":
			h.Set("Content-Type", "application/json")
			h.Set("ETag", `"abc"`)
			io.WriteString(w, bigJSON)
		case "/small.json":
			h.Set("Content-Type", "application/json")
			io.WriteString(w, `{"ok":true}`)
		case "/big.png":
			h.Set("Content-Type", "image/png")
			io.WriteString(w, bigJSON)
		case "/no-transform":
			h.Set("Content-Type", "text/html")
			h.Set("Cache-Control", "no-transform")
			io.WriteString(w, bigJSON)
		case "/events":
			h.Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: first\n\n")
			http.NewResponseController(w).Flush()
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
		}
	})
}

// TestCompressionByTypeSizeAndClient runs the real binary in front of an
// app: answers are compressed by type, size and what the client accepts,
// over HTTP/1.1 and HTTP/2, and an SSE event arrives compressed while the
// stream is still open.
func TestCompressionByTypeSizeAndClient(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(compressApp(release))
	defer up.Close()
	// Runs first: up.Close waits for the /events handler.
	defer close(release)
	in := startBulwark(t, withUpstream(strings.TrimPrefix(up.URL, "http://"), ""), nil) // [compress] defaults

	bigJSON := strings.Repeat(`{"id":1,"name":"bulwark"},`, 400)
	for _, h2 := range []bool{false, true} {
		c := in.client(h2)
		c.Transport.(*http.Transport).DisableCompression = true
		do := func(method, path, accept string) (*http.Response, []byte) {
			t.Helper()
			req, _ := http.NewRequest(method, in.url(path), nil)
			if accept != "" {
				req.Header.Set("Accept-Encoding", accept)
			}
			res, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatalf("%s %s: reading: %v", method, path, err)
			}
			return res, b
		}
		tests := []struct {
			method, path, accept, wantEnc string
		}{
			{"GET", "/big.json", "gzip, deflate, br, zstd", "zstd"},
			{"GET", "/big.json", "gzip", "gzip"},
			{"GET", "/big.json", "", ""},
			{"GET", "/big.json", "br", ""},
			{"HEAD", "/big.json", "gzip", ""},
			{"GET", "/small.json", "gzip", ""},
			{"GET", "/big.png", "gzip", ""},
			{"GET", "/no-transform", "gzip", ""},
		}
		for _, tt := range tests {
			res, body := do(tt.method, tt.path, tt.accept)
			if got := res.Header.Get("Content-Encoding"); got != tt.wantEnc {
				t.Errorf("h2 %v: %s %s with %q: Content-Encoding = %q; want %q", h2, tt.method, tt.path, tt.accept, got, tt.wantEnc)
				continue
			}
			if tt.path != "/big.json" || tt.method == "HEAD" {
				continue
			}
			if got := decodeBody(t, tt.wantEnc, body); got != bigJSON {
				t.Errorf("h2 %v: %s with %q: decoded %d bytes, want the app's %d", h2, tt.path, tt.accept, len(got), len(bigJSON))
			}
			if res.Header.Get("Vary") != "Accept-Encoding" {
				t.Errorf("h2 %v: %s with %q: Vary = %q; want Accept-Encoding", h2, tt.path, tt.accept, res.Header.Get("Vary"))
			}
			if tt.wantEnc != "" && (res.Header.Get("ETag") != `W/"abc"` || len(body) > len(bigJSON)/4) {
				t.Errorf("h2 %v: %s with %q: ETag %q, %d bytes; want W/\"abc\", compressed", h2, tt.path, tt.accept, res.Header.Get("ETag"), len(body))
			}
		}

		req, _ := http.NewRequest("GET", in.url("/events"), nil)
		req.Header.Set("Accept-Encoding", "gzip")
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if res.Header.Get("Content-Encoding") != "gzip" {
			t.Errorf("h2 %v: SSE Content-Encoding = %q; want gzip", h2, res.Header.Get("Content-Encoding"))
		}
		got := make(chan string, 1)
		go func() {
			zr, err := gzip.NewReader(res.Body)
			if err != nil {
				got <- "error " + err.Error()
				return
			}
			line, _ := bufio.NewReader(zr).ReadString('\n')
			got <- line
		}()
		select {
		case line := <-got:
			if line != "data: first\n" {
				t.Errorf("h2 %v: SSE first line = %q", h2, line)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("h2 %v: the flushed SSE event did not arrive within 10s while the stream was open", h2)
		}
		res.Body.Close()
	}
}

func decodeBody(t *testing.T, coding string, b []byte) string {
	t.Helper()
	switch coding {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		out, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		return string(out)
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("zstd: %v", err)
		}
		defer zr.Close()
		out, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("zstd: %v", err)
		}
		return string(out)
	}
	return string(b)
}
