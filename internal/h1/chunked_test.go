package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
)

// TestChunkedRoundTrip: what WriteChunk and WriteLastChunk write,
// net/http's decoder reads back, trailer included.
func TestChunkedRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	for _, p := range []string{"hello", "", strings.Repeat("x", 300)} {
		if err := WriteChunk(bw, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	WriteLastChunk(bw, http.Header{"X-Sum": {"1\r\n2"}, "Bad Name": {"v"}})
	bw.Flush()
	br := bufio.NewReader(bytes.NewReader(buf.Bytes()))
	body, err := io.ReadAll(httputil.NewChunkedReader(br))
	if err != nil {
		t.Fatal(err)
	}
	if want := "hello" + strings.Repeat("x", 300); string(body) != want {
		t.Fatalf("body %q, want %q", body, want)
	}
	h, _, err := ReadTrailer(br, nil, 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 1 || h.Get("X-Sum") != "1  2" {
		t.Errorf("trailer %q, want X-Sum: 1  2 only (line breaks turned to spaces, invalid names dropped)", h)
	}
	if br.Buffered() != 0 {
		t.Errorf("%d bytes left after the trailer", br.Buffered())
	}
}

// TestTrailerReaders: both trailer readers stop at the empty line, refuse
// a line not ended by CRLF (golang/go#81143) and bound the section.
func TestTrailerReaders(t *testing.T) {
	for _, tt := range []struct {
		in   string
		ok   bool
		rest string
	}{
		{"\r\nNEXT", true, "NEXT"},
		{"X-A: 1\r\nX-A: 2\r\n\r\nNEXT", true, "NEXT"},
		{"\nNEXT", false, ""},
		{"X-A: 1\n\r\nNEXT", false, ""},
		{"X-A: 1\r\n\nNEXT", false, ""},
		{"X-A: " + strings.Repeat("a", 200) + "\r\n\r\n", false, ""},
		{"X-A: 1\r\n", false, ""},
	} {
		br := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
		err := SkipTrailer(br, 100)
		if (err == nil) != tt.ok {
			t.Errorf("SkipTrailer(%q): %v", tt.in, err)
		} else if tt.ok {
			if rest, _ := io.ReadAll(br); string(rest) != tt.rest {
				t.Errorf("SkipTrailer(%q): rest %q", tt.in, rest)
			}
		}
		br = bufio.NewReaderSize(strings.NewReader(tt.in), 16)
		h, _, err := ReadTrailer(br, nil, 100)
		if (err == nil) != tt.ok {
			t.Errorf("ReadTrailer(%q): %v", tt.in, err)
		} else if tt.ok {
			if rest, _ := io.ReadAll(br); string(rest) != tt.rest {
				t.Errorf("ReadTrailer(%q): rest %q", tt.in, rest)
			}
			if strings.HasPrefix(tt.in, "X-A") && len(h["X-A"]) != 2 {
				t.Errorf("ReadTrailer(%q): %q", tt.in, h)
			}
		}
	}
	// A faulty field fails ReadTrailer as it would a head.
	for _, in := range []string{"X-A : 1\r\n\r\n", "X-A: 1\r\n 2\r\n\r\n", "X-A: a\x00\r\n\r\n"} {
		if _, _, err := ReadTrailer(bufio.NewReader(strings.NewReader(in)), nil, 100); err == nil {
			t.Errorf("ReadTrailer(%q): accepted", in)
		}
	}
}
