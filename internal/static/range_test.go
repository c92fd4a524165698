package static

import (
	"fmt"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ranges is n single-byte ranges, start, start+step, ….
func ranges(n, start, step int) string {
	specs := make([]string, n)
	for i := range specs {
		b := start + i*step
		specs[i] = fmt.Sprintf("%d-%d", b, b)
	}
	return "bytes=" + strings.Join(specs, ",")
}

// TestRangeEdges: a zero-length suffix is 416 with bytes */size, not a 206
// with an impossible Content-Range; a range on an empty file is ignored;
// too many or overlapping ranges are ignored (200, the whole file); and
// ordinary ranges and preconditions still work.
func TestRangeEdges(t *testing.T) {
	_, h := newServer(t, 0)
	etag := get(h, "/static/big.txt").Header().Get("ETag")
	tests := []struct {
		name, target string
		hdr          []string
		code         int
		contentRange string
		body         string // "" checks nothing; "multipart" a multipart answer
	}{
		{"zero suffix", "/static/big.txt", []string{"Range", "bytes=-0"}, 416, "bytes */1000", ""},
		{"zero suffix and one past the end", "/static/big.txt", []string{"Range", "bytes=-0, 2000-"}, 416, "bytes */1000", ""},
		{"zero suffix beside a range", "/static/big.txt", []string{"Range", "bytes=0-1,-0"}, 206, "bytes 0-1/1000", "01"},
		{"zero suffix, If-None-Match first", "/static/big.txt", []string{"Range", "bytes=-0", "If-None-Match", etag}, 304, "", ""},
		{"zero suffix, If-Range another", "/static/big.txt", []string{"Range", "bytes=-0", "If-Range", `"other"`}, 200, "", strings.Repeat("0123456789", 100)},
		{"empty file, suffix", "/static/empty.txt", []string{"Range", "bytes=-5"}, 200, "", ""},
		{"empty file, from 0", "/static/empty.txt", []string{"Range", "bytes=0-"}, 200, "", ""},
		{"101 ranges", "/static/big.txt", []string{"Range", ranges(101, 0, 2)}, 200, "", strings.Repeat("0123456789", 100)},
		{"100 ranges", "/static/big.txt", []string{"Range", ranges(100, 0, 2)}, 206, "", "multipart"},
		{"overlapping ranges", "/static/big.txt", []string{"Range", "bytes=0-0,0-0,0-0,0-0"}, 200, "", strings.Repeat("0123456789", 100)},
		{"two overlaps", "/static/big.txt", []string{"Range", "bytes=0-1,1-2,2-3"}, 206, "", "multipart"},
		{"one range", "/static/big.txt", []string{"Range", "bytes=-3"}, 206, "bytes 997-999/1000", "789"},
		{"bad syntax", "/static/big.txt", []string{"Range", "bytes=x-1"}, 416, "", ""},
	}
	for _, tt := range tests {
		rec := get(h, tt.target, tt.hdr...)
		if rec.Code != tt.code || rec.Header().Get("Content-Range") != tt.contentRange {
			t.Errorf("%s: %d, Content-Range %q; want %d, %q", tt.name, rec.Code, rec.Header().Get("Content-Range"), tt.code, tt.contentRange)
		}
		switch mt, _, _ := mime.ParseMediaType(rec.Header().Get("Content-Type")); {
		case tt.body == "multipart" && mt != "multipart/byteranges":
			t.Errorf("%s: Content-Type %q; want multipart/byteranges", tt.name, mt)
		case tt.body != "" && tt.body != "multipart" && rec.Body.String() != tt.body:
			t.Errorf("%s: %d bytes, starting %.40q; want %d bytes, starting %.40q", tt.name, rec.Body.Len(), rec.Body, len(tt.body), tt.body)
		}
	}
}

// TestRangeAmplification: 3000 ranges of one byte on a 1 MB file, which
// would be a multipart answer of some 400 KB for 3000 bytes asked, get
// the file once instead.
func TestRangeAmplification(t *testing.T) {
	dir := t.TempDir()
	const size = 1 << 20
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Mounts: []Mount{{Path: "/static/", Dir: dir}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := s.Middleware(nil)
	rng := "bytes=" + strings.Repeat("0-0,", 2999) + "0-0"
	if rec := get(h, "/static/big.bin", "Range", rng); rec.Code != 200 || rec.Body.Len() != size {
		t.Errorf("3000 ranges of 0-0: %d with %d bytes; want 200 with the file's %d", rec.Code, rec.Body.Len(), size)
	}
	if rec := get(h, "/static/big.bin", "Range", ranges(3000, 0, 2)); rec.Code != 200 || rec.Body.Len() != size {
		t.Errorf("3000 ranges apart: %d with %d bytes; want 200 with the file's %d", rec.Code, rec.Body.Len(), size)
	}
}
