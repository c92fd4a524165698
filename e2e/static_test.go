package e2e

import (
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStaticFiles: [[static]] is served by Bulwark itself (the upstream is
// a port nothing listens on) over HTTP/1.1 and HTTP/2: 200 with type and
// cache headers, 304, 206 for one and several ranges, precompressed
// siblings, and traversal, encoded traversal, symlinks out and dotfiles
// refused.
func TestStaticFiles(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "public")
	files := map[string]string{
		"public/app.3f2a9c1b.js": "console.log('hashed')",
		"public/big.txt":         strings.Repeat("abcdefghij", 1000),
		"public/data.json":       `{"plain":true}`,
		"public/data.json.br":    "br-variant",
		"public/data.json.zst":   "zstd-variant",
		"public/data.json.gz":    "gzip-variant",
		"public/.env":            "DB_PASSWORD=hunter2",
		"secret.txt":             "SECRET OUTSIDE",
	}
	for name, body := range files {
		p := filepath.Join(top, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../secret.txt", filepath.Join(dir, "leak.txt")); err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	in := startBulwark(t, withUpstream(dead, "")+fmt.Sprintf(`
[[static]]
path = "/static/"
dir = %q
cache = "7d"
`, dir), nil)

	for _, h2 := range []bool{false, true} {
		c := in.client(h2)
		do := func(path string, hdr ...string) (*http.Response, string) {
			t.Helper()
			req, err := http.NewRequest(http.MethodGet, in.url(path), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept-Encoding", "identity") // the Go client would ask for gzip itself
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			res, err := c.Do(req)
			if err != nil {
				t.Fatalf("GET %s (h2 %v): %v", path, h2, err)
			}
			return res, readAll(t, res)
		}
		res, body := do("/static/app.3f2a9c1b.js")
		if res.StatusCode != 200 || body != files["public/app.3f2a9c1b.js"] || (res.ProtoMajor == 2) != h2 {
			t.Fatalf("h2 %v: GET app.js = %s %d %q", h2, res.Proto, res.StatusCode, body)
		}
		if got := res.Header.Get("Content-Type"); got != "text/javascript; charset=utf-8" {
			t.Errorf("h2 %v: Content-Type = %q", h2, got)
		}
		if got := res.Header.Get("Cache-Control"); got != "public, max-age=604800, immutable" {
			t.Errorf("h2 %v: Cache-Control = %q", h2, got)
		}
		etag, lastMod := res.Header.Get("ETag"), res.Header.Get("Last-Modified")

		if res, _ := do("/static/app.3f2a9c1b.js", "If-None-Match", etag); res.StatusCode != 304 {
			t.Errorf("h2 %v: If-None-Match = %d; want 304", h2, res.StatusCode)
		}
		if res, _ := do("/static/app.3f2a9c1b.js", "If-Modified-Since", lastMod); res.StatusCode != 304 {
			t.Errorf("h2 %v: If-Modified-Since = %d; want 304", h2, res.StatusCode)
		}
		if res, body := do("/static/big.txt", "Range", "bytes=9990-"); res.StatusCode != 206 || body != "abcdefghij" {
			t.Errorf("h2 %v: one range = %d %q; want 206 abcdefghij", h2, res.StatusCode, body)
		}
		res, body = do("/static/big.txt", "Range", "bytes=0-2,5000-5001")
		mt, params, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
		if res.StatusCode != 206 || mt != "multipart/byteranges" {
			t.Errorf("h2 %v: two ranges = %d %s; want 206 multipart/byteranges", h2, res.StatusCode, mt)
		} else {
			mr := multipart.NewReader(strings.NewReader(body), params["boundary"])
			var got []string
			for range 3 {
				p, err := mr.NextPart()
				if err != nil {
					break
				}
				b, _ := io.ReadAll(p)
				got = append(got, string(b))
			}
			if strings.Join(got, ",") != "abc,ab" {
				t.Errorf("h2 %v: parts = %q; want abc, ab", h2, got)
			}
		}
		for accept, want := range map[string]string{
			"br, gzip, zstd": "br-variant", "zstd, gzip": "zstd-variant", "gzip": "gzip-variant", "identity": `{"plain":true}`,
		} {
			res, body := do("/static/data.json", "Accept-Encoding", accept)
			if body != want || res.Header.Get("Vary") != "Accept-Encoding" || res.Header.Get("Content-Type") != "application/json" {
				t.Errorf("h2 %v: Accept-Encoding %q = %q, Vary %q, type %q; want %q", h2, accept, body,
					res.Header.Get("Vary"), res.Header.Get("Content-Type"), want)
			}
		}
		for _, path := range []string{"/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/..%2fsecret.txt",
			"/static/leak.txt", "/static/.env", "/static/", "/static/%2eenv"} {
			res, body := do(path)
			if res.StatusCode < 400 || strings.Contains(body, "SECRET") || strings.Contains(body, "hunter2") {
				t.Errorf("h2 %v: GET %s = %d %q; want refused", h2, path, res.StatusCode, body)
			}
		}
	}
}
