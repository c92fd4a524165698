package static

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tree writes a served directory and a secret beside it, and returns the
// served directory.
func tree(t testing.TB) string {
	t.Helper()
	top := t.TempDir()
	dir := filepath.Join(top, "public")
	files := map[string]string{
		"public/app.css":             "body{color:red}",
		"public/app.3f2a9c1b.js":     "console.log(1)",
		"public/big.txt":             strings.Repeat("0123456789", 100),
		"public/data.json":           `{"a":1}`,
		"public/data.json.br":        "BR-BYTES",
		"public/data.json.zst":       "ZSTD-BYTES",
		"public/data.json.gz":        "GZIP-BYTES",
		"public/only-gz.svg":         "<svg/>",
		"public/only-gz.svg.gz":      "GZ-SVG",
		"public/.env":                "SECRET=1",
		"public/.git/config":         "[core]",
		"public/sub/page.html":       "<p>hi</p>",
		"secret.txt":                 "top secret",
		"public/sub/.hidden/x.txt":   "hidden",
		"public/noext":               "plain bytes",
		"public/evil":                "<html><script>alert(1)</script>",
		"public/evil.qqq":            "<html><script>alert(1)</script>",
		"public/empty.txt":           "",
		"public/index-BRfz3XyO.js":   "vite",
		"public/Roboto-Regular.woff": "font",
	}
	write(t, top, files)
	if err := os.Symlink(filepath.Join(top, "secret.txt"), filepath.Join(dir, "leak.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../secret.txt", filepath.Join(dir, "leak2.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("app.css", filepath.Join(dir, "alias.css")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newServer(t *testing.T, cache time.Duration) (*Server, http.Handler) {
	t.Helper()
	s, err := New(Options{Mounts: []Mount{{Path: "/static/", Dir: tree(t), Cache: cache}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("from the app")) })
	return s, s.Middleware(next)
}

func get(h http.Handler, target string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func TestServeFile(t *testing.T) {
	_, h := newServer(t, 7*24*time.Hour)
	rec := get(h, "/static/app.css")
	if rec.Code != 200 || rec.Body.String() != "body{color:red}" {
		t.Fatalf("GET app.css = %d %q", rec.Code, rec.Body)
	}
	hd := rec.Header()
	for k, want := range map[string]string{
		"Content-Type":  "text/css; charset=utf-8",
		"Cache-Control": "public, max-age=604800",
		"Vary":          "Accept-Encoding",
	} {
		if got := hd.Get(k); got != want {
			t.Errorf("%s = %q; want %q", k, got, want)
		}
	}
	if hd.Get("ETag") == "" || hd.Get("Last-Modified") == "" {
		t.Errorf("ETag %q, Last-Modified %q; want both", hd.Get("ETag"), hd.Get("Last-Modified"))
	}
	if got := get(h, "/elsewhere").Body.String(); got != "from the app" {
		t.Errorf("GET /elsewhere = %q; want the app's answer", got)
	}
}

func TestConditional(t *testing.T) {
	_, h := newServer(t, 0)
	first := get(h, "/static/app.css")
	if got := first.Header().Get("Cache-Control"); got != "no-cache" {
		t.Errorf("Cache-Control with cache 0 = %q; want no-cache", got)
	}
	if rec := get(h, "/static/app.css", "If-None-Match", first.Header().Get("ETag")); rec.Code != 304 || rec.Body.Len() != 0 {
		t.Errorf("If-None-Match = %d with %d bytes; want 304, empty", rec.Code, rec.Body.Len())
	}
	if rec := get(h, "/static/app.css", "If-Modified-Since", first.Header().Get("Last-Modified")); rec.Code != 304 {
		t.Errorf("If-Modified-Since = %d; want 304", rec.Code)
	}
	if rec := get(h, "/static/app.css", "If-None-Match", `"other"`); rec.Code != 200 {
		t.Errorf("If-None-Match of another ETag = %d; want 200", rec.Code)
	}
}

func TestRanges(t *testing.T) {
	_, h := newServer(t, 0)
	rec := get(h, "/static/big.txt", "Range", "bytes=10-14")
	if rec.Code != 206 || rec.Body.String() != "01234" || rec.Header().Get("Content-Range") != "bytes 10-14/1000" {
		t.Errorf("single range = %d %q %q; want 206 \"01234\" bytes 10-14/1000", rec.Code, rec.Body, rec.Header().Get("Content-Range"))
	}
	rec = get(h, "/static/big.txt", "Range", "bytes=0-1,995-")
	mt, params, _ := mime.ParseMediaType(rec.Header().Get("Content-Type"))
	if rec.Code != 206 || mt != "multipart/byteranges" {
		t.Fatalf("multiple ranges = %d %q; want 206 multipart/byteranges", rec.Code, mt)
	}
	mr := multipart.NewReader(rec.Body, params["boundary"])
	var parts []string
	for range 3 {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(p)
		parts = append(parts, p.Header.Get("Content-Range")+"="+string(b))
	}
	if want := []string{"bytes 0-1/1000=01", "bytes 995-999/1000=56789"}; strings.Join(parts, " ") != strings.Join(want, " ") {
		t.Errorf("parts = %q; want %q", parts, want)
	}
	if rec := get(h, "/static/big.txt", "Range", "bytes=5000-"); rec.Code != 416 {
		t.Errorf("range past the end = %d; want 416", rec.Code)
	}
}

func TestPrecompressed(t *testing.T) {
	_, h := newServer(t, 0)
	tests := []struct{ accept, wantBody, wantEnc string }{
		{"gzip, deflate, br, zstd", "BR-BYTES", "br"},
		{"gzip, zstd", "ZSTD-BYTES", "zstd"},
		{"gzip", "GZIP-BYTES", "gzip"},
		{"br;q=0.5, gzip;q=0.9", "GZIP-BYTES", "gzip"},
		{"br;q=0", `{"a":1}`, ""},
		{"", `{"a":1}`, ""},
		{"identity", `{"a":1}`, ""},
	}
	etags := map[string]string{}
	for _, tt := range tests {
		rec := get(h, "/static/data.json", "Accept-Encoding", tt.accept)
		hd := rec.Header()
		if rec.Body.String() != tt.wantBody || hd.Get("Content-Encoding") != tt.wantEnc {
			t.Errorf("Accept-Encoding %q: body %q, encoding %q; want %q, %q", tt.accept, rec.Body, hd.Get("Content-Encoding"), tt.wantBody, tt.wantEnc)
		}
		if hd.Get("Content-Type") != "application/json" || hd.Get("Vary") != "Accept-Encoding" {
			t.Errorf("Accept-Encoding %q: Content-Type %q, Vary %q", tt.accept, hd.Get("Content-Type"), hd.Get("Vary"))
		}
		etags[tt.wantEnc] = hd.Get("ETag")
	}
	if len(etags) != 4 || etags["br"] == etags[""] || etags["gzip"] == etags["zstd"] {
		t.Errorf("ETags per coding = %q; want four different ones", etags)
	}
	// No .br sibling: the next coding the client takes.
	if rec := get(h, "/static/only-gz.svg", "Accept-Encoding", "br, gzip"); rec.Body.String() != "GZ-SVG" ||
		rec.Header().Get("Content-Type") != "image/svg+xml" {
		t.Errorf("only-gz.svg = %q, %q; want the .gz as image/svg+xml", rec.Body, rec.Header().Get("Content-Type"))
	}
}

func TestRefused(t *testing.T) {
	_, h := newServer(t, 0)
	for _, target := range []string{
		"/static/../secret.txt",
		"/static/%2e%2e/secret.txt",
		"/static/sub/%2e%2e/%2e%2e/secret.txt",
		"/static/sub%2fpage.html",
		"/static/sub%5cpage.html",
		"/static/..%5csecret.txt",
		"/static/leak.txt",
		"/static/leak2.txt",
		"/static/.env",
		"/static/.git/config",
		"/static/sub/.hidden/x.txt",
		"/static/",
		"/static/sub/",
		"/static/sub",
		"/static/sub//page.html",
		"/static/./app.css",
		"/static/missing.css",
	} {
		rec := get(h, target)
		if rec.Code != 404 || strings.Contains(rec.Body.String(), "secret") || strings.Contains(rec.Body.String(), "SECRET") ||
			strings.Contains(rec.Body.String(), "<a href") {
			t.Errorf("GET %s = %d %q; want 404 without content", target, rec.Code, rec.Body)
		}
	}
	if rec := get(h, "/static/alias.css"); rec.Code != 200 || rec.Body.String() != "body{color:red}" {
		t.Errorf("a symlink inside the directory = %d %q; want it served", rec.Code, rec.Body)
	}
	r := httptest.NewRequest(http.MethodPost, "/static/app.css", bytes.NewReader([]byte("x")))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST = %d, Allow %q; want 405, GET, HEAD", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestHashedNames(t *testing.T) {
	tests := map[string]bool{
		"app.3f2a9c1b.js":          true,
		"index-BRfz3XyO.js":        true,
		"css/main.0a12bc3d.css":    true,
		"app.js":                   false,
		"jquery-3.7.1.min.js":      false,
		"Roboto-Regular.woff":      false,
		"material-20240101.woff2":  false,
		"logo-deadbeef.svg":        false, // hex without a digit
		"readme-abcdefgh.txt":      false,
		"vendor.abcdef0123456.css": true,
		// What the tools write.
		"main-BkS2c9xQ.js":                  true, // Vite, Rollup
		"style.abcdef123456.css":            true, // Django ManifestStaticFilesStorage
		"style.5e8f1c2a9b3d.css":            true,
		"main.4e5f6a7b8c9d0e1f2a3b.js":      true, // webpack's 20 hex
		"main.3f2a9c1b7e4d5a6f.js":          true, // Angular
		"_next/static/chunks/a-9b8c7d6e.js": true,
		// Names people give.
		"README-Version2.txt":      false,
		"Changelog-Release1.txt":   false,
		"photo-abc12345.jpg":       false,
		"css/main.0123abcd.css":    false, // a number then a word
		"report-2024Final.pdf":     false,
		"Setup-Win64Installer.exe": false, // camel-case words
		"IMG-20240101abc.jpg":      false,
		"notes-release2024a.txt":   false,
	}
	for name, want := range tests {
		if got := hashed(name); got != want {
			t.Errorf("hashed(%q) = %v; want %v", name, got, want)
		}
	}
	_, h := newServer(t, time.Hour)
	if got := get(h, "/static/app.3f2a9c1b.js").Header().Get("Cache-Control"); got != "public, max-age=3600, immutable" {
		t.Errorf("Cache-Control of a hashed name = %q", got)
	}
}

func TestLongestPrefixAndUpdate(t *testing.T) {
	dir := tree(t)
	s, err := New(Options{Mounts: []Mount{{Path: "/static/", Dir: dir}, {Path: "/static/sub/", Dir: filepath.Join(dir, "sub")}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := s.Middleware(http.NotFoundHandler())
	if rec := get(h, "/static/sub/page.html"); rec.Code != 200 {
		t.Errorf("GET /static/sub/page.html = %d; want 200", rec.Code)
	}
	if err := s.Update(Options{Mounts: []Mount{{Path: "/static/", Dir: filepath.Join(dir, "nope")}}}); err == nil {
		t.Errorf("Update with a missing directory succeeded")
	}
	if rec := get(h, "/static/app.css"); rec.Code != 200 {
		t.Errorf("after a failed Update, GET = %d; want the old mounts", rec.Code)
	}
	if _, err := New(Options{Mounts: []Mount{{Path: "/x/", Dir: filepath.Join(dir, "app.css")}}}); err == nil {
		t.Errorf("New with a file as the directory succeeded")
	}
}

func TestFileSlots(t *testing.T) {
	s, err := New(Options{Mounts: []Mount{{Path: "/static/", Dir: tree(t)}}, MaxOpen: 1, OpenWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := s.Middleware(http.NotFoundHandler())
	s.slots <- struct{}{} // a transfer in flight holds the only slot
	if rec := get(h, "/static/app.css"); rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("GET with no file slot = %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	<-s.slots
	if rec := get(h, "/static/app.css"); rec.Code != 200 {
		t.Errorf("GET with a free slot = %d; want 200", rec.Code)
	}
	if len(s.slots) != 0 {
		t.Errorf("%d slots held after the transfers ended; want 0", len(s.slots))
	}
}

// TestPerClientShare: one client holds at most its share of the file
// slots (429 past it) while another client is still served.
func TestPerClientShare(t *testing.T) {
	s, err := New(Options{Mounts: []Mount{{Path: "/static/", Dir: tree(t)}}, MaxOpen: 64, OpenWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := s.Middleware(http.NotFoundHandler())
	if s.perClient != 16 {
		t.Fatalf("perClient = %d, want 16 (an eighth of 64, at least 16)", s.perClient)
	}
	greedy := netip.MustParseAddr("192.0.2.1") // httptest's RemoteAddr
	for range s.perClient {
		s.clients.Acquire(greedy, 0) // transfers in flight to that client
	}
	if rec := get(h, "/static/app.css"); rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Errorf("GET past the client's share = %d, Retry-After %q; want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	r := httptest.NewRequest(http.MethodGet, "/static/app.css", nil)
	r.RemoteAddr = "198.51.100.9:4000"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		t.Errorf("GET from another client = %d; want 200", rec.Code)
	}
	for range s.perClient {
		s.clients.Release(greedy)
	}
	if rec := get(h, "/static/app.css"); rec.Code != http.StatusOK {
		t.Errorf("GET once the client's transfers ended = %d; want 200", rec.Code)
	}
}

// TestSizedFile: Seek moves only an offset, reads come from it, and a
// file cut short after its stat ends early instead of reading past.
func TestSizedFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sf := &sizedFile{f: f, size: 10}
	if n, err := sf.Seek(0, io.SeekEnd); n != 10 || err != nil {
		t.Fatalf("Seek(0, End) = %d, %v; want 10", n, err)
	}
	if n, err := sf.Seek(-4, io.SeekCurrent); n != 6 || err != nil {
		t.Fatalf("Seek(-4, Current) = %d, %v; want 6", n, err)
	}
	if b, err := io.ReadAll(sf); string(b) != "6789" || err != nil {
		t.Fatalf("read from 6 = %q, %v", b, err)
	}
	if _, err := sf.Seek(-1, io.SeekStart); err == nil {
		t.Error("Seek before the start succeeded")
	}
	sf.Seek(2, io.SeekStart)
	buf := make([]byte, 3)
	if n, err := sf.Read(buf); n != 3 || string(buf) != "234" || err != nil {
		t.Fatalf("Read at 2 = %d %q %v", n, buf[:n], err)
	}
	if err := os.Truncate(p, 7); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(sf); string(b) != "56" || err != nil {
		t.Errorf("read of a file cut to 7 bytes from 5 = %q, %v; want \"56\"", b, err)
	}
}

// write writes files (name to content) under top.
func write(t testing.TB, top string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(top, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDirectorySwapped: when the configured path comes to name another
// directory — a "current" symlink swapped atomically on deploy, or a
// directory deleted and made again — files are served from the new one
// without a reload: at once for a name the old one lacks (a new release's
// files, or all once the old one is deleted), within dirCheckEvery for the
// rest. A symlink leaving the new directory is still refused.
func TestDirectorySwapped(t *testing.T) {
	defer func(old time.Duration) { dirCheckEvery = old }(dirCheckEvery)
	dirCheckEvery = 50 * time.Millisecond
	top := t.TempDir()
	write(t, top, map[string]string{
		"rel/r1/app.txt": "release one",
		"rel/r2/app.txt": "release two",
		"rel/r2/new.txt": "new in two",
		"rel/r3/app.txt": "release three",
		"www3/a.txt":     "old www3",
	})
	current := filepath.Join(top, "current")
	if err := os.Symlink("rel/r1", current); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../r1/app.txt", filepath.Join(top, "rel/r2/leak.txt")); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Mounts: []Mount{
		{Path: "/static/", Dir: current},
		{Path: "/www3/", Dir: filepath.Join(top, "www3")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := s.Middleware(http.NotFoundHandler())
	if rec := get(h, "/static/app.txt"); rec.Body.String() != "release one" {
		t.Fatalf("before the swap: %d %q; want release one", rec.Code, rec.Body)
	}
	swap := func(target string) {
		t.Helper()
		// ln -sfn target current.tmp && mv -T current.tmp current
		tmp := filepath.Join(top, "current.tmp")
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, current); err != nil {
			t.Fatal(err)
		}
	}

	swap("rel/r2")
	if rec := get(h, "/static/new.txt"); rec.Code != 200 || rec.Body.String() != "new in two" {
		t.Errorf("a new release's file, right after the swap: %d %q; want new in two", rec.Code, rec.Body)
	}
	if rec := get(h, "/static/app.txt"); rec.Code != 200 || rec.Body.String() != "release two" {
		t.Errorf("after the swap: %d %q; want release two", rec.Code, rec.Body)
	}
	if rec := get(h, "/static/leak.txt"); rec.Code != 404 {
		t.Errorf("a symlink out of the new directory (to the old one) = %d %q; want 404", rec.Code, rec.Body)
	}

	swap("rel/r3")
	time.Sleep(dirCheckEvery + 10*time.Millisecond)
	if rec := get(h, "/static/app.txt"); rec.Code != 200 || rec.Body.String() != "release three" {
		t.Errorf("%v after a swap: %d %q; want release three", dirCheckEvery, rec.Code, rec.Body)
	}
	swap("rel/r2")
	if err := os.RemoveAll(filepath.Join(top, "rel/r3")); err != nil {
		t.Fatal(err)
	}
	if rec := get(h, "/static/app.txt"); rec.Code != 200 || rec.Body.String() != "release two" {
		t.Errorf("right after a swap and the old release deleted: %d %q; want release two", rec.Code, rec.Body)
	}

	// rm -rf www3 && mkdir www3
	www3 := filepath.Join(top, "www3")
	if err := os.RemoveAll(www3); err != nil {
		t.Fatal(err)
	}
	if rec := get(h, "/www3/a.txt"); rec.Code != 404 {
		t.Errorf("with the directory gone: %d %q; want 404", rec.Code, rec.Body)
	}
	write(t, top, map[string]string{"www3/a.txt": "new www3"})
	if rec := get(h, "/www3/a.txt"); rec.Code != 200 || rec.Body.String() != "new www3" {
		t.Errorf("after the directory was made again: %d %q; want new www3", rec.Code, rec.Body)
	}
}

// TestNoSniff: a file with no extension or an unknown one is
// application/octet-stream, never sniffed (an upload holding HTML must not
// become text/html), and every file answer carries nosniff.
func TestNoSniff(t *testing.T) {
	_, h := newServer(t, 0)
	for _, target := range []string{"/static/evil", "/static/evil.qqq", "/static/noext"} {
		rec := get(h, target)
		if got := rec.Header().Get("Content-Type"); rec.Code != 200 || got != "application/octet-stream" {
			t.Errorf("GET %s = %d, Content-Type %q; want 200 application/octet-stream", target, rec.Code, got)
		}
	}
	for _, target := range []string{"/static/evil", "/static/app.css", "/static/big.txt"} {
		if got := get(h, target, "Range", "bytes=0-1").Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options = %q; want nosniff", target, got)
		}
		if got := get(h, target).Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options = %q; want nosniff", target, got)
		}
	}
}

// TestPrecompressedLength: a precompressed variant sent whole has its
// Content-Length, on GET (not chunked) and HEAD, as a plain file has;
// a range of it has the range's.
func TestPrecompressedLength(t *testing.T) {
	dir := t.TempDir()
	gz := strings.Repeat("compressed bytes ", 1000) // past net/http's buffer, which would count a short body
	write(t, dir, map[string]string{"app.js": "plain", "app.js.gz": gz})
	s, err := New(Options{Mounts: []Mount{{Path: "/static/", Dir: dir}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s.Middleware(http.NotFoundHandler()))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	do := func(method string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+"/static/app.js", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept-Encoding", "gzip")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	resp, body := do(http.MethodGet)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" || body != gz {
		t.Fatalf("GET = %d, Content-Encoding %q, %d bytes; want 200 gzip, the .gz", resp.StatusCode, resp.Header.Get("Content-Encoding"), len(body))
	}
	if resp.ContentLength != int64(len(gz)) || len(resp.TransferEncoding) != 0 {
		t.Errorf("GET: Content-Length %d, Transfer-Encoding %q; want %d, none", resp.ContentLength, resp.TransferEncoding, len(gz))
	}
	if resp, _ := do(http.MethodHead); resp.ContentLength != int64(len(gz)) {
		t.Errorf("HEAD: Content-Length %d; want %d", resp.ContentLength, len(gz))
	}
	if resp, body := do(http.MethodGet, "Range", "bytes=0-9"); resp.StatusCode != 206 || resp.ContentLength != 10 || body != gz[:10] {
		t.Errorf("GET a range: %d, Content-Length %d, %q; want 206, 10, %q", resp.StatusCode, resp.ContentLength, body, gz[:10])
	}
	if resp, _ := do(http.MethodGet, "If-None-Match", resp.Header.Get("ETag")); resp.StatusCode != 304 || resp.Header.Get("Content-Length") != "" {
		t.Errorf("GET revalidated: %d, Content-Length %q; want 304 without a length", resp.StatusCode, resp.Header.Get("Content-Length"))
	}
}
