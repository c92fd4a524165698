package h2

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// trailerBlock sends a trailer block with END_STREAM on stream id.
func (r *h2Raw) trailerBlock(t *testing.T, id uint32, fields ...string) {
	t.Helper()
	r.buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		r.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.buf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
}

// answerOn reads frames until the response head on stream id and returns
// it; a RST_STREAM on id fails the test.
func (r *h2Raw) answerOn(t *testing.T, id uint32) *http2.MetaHeadersFrame {
	t.Helper()
	for i := 0; i < 100; i++ {
		f := r.next(t)
		if f.Header().StreamID != id {
			continue
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			return f
		case *http2.RSTStreamFrame:
			t.Fatalf("stream %d reset with %v", id, f.ErrCode)
		}
	}
	t.Fatalf("no answer on stream %d in 100 frames", id)
	return nil
}

// field returns the value of the regular field name in h.
func field(h *http2.MetaHeadersFrame, name string) string {
	for _, hf := range h.RegularFields() {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

// TestH2TrailersNotWrittenWhileHandlerReads is the regression test for the
// crash of issue 14: the reader goroutine wrote the trailer fields into
// req.Trailer while the handler (the proxy's framingFor) iterated it, which
// is "fatal error: concurrent map iteration and map write" and, under
// -race, a data race. req.Trailer must only change before the body's Read
// returns io.EOF, on the goroutine that reads the body.
func TestH2TrailersNotWrittenWhileHandlerReads(t *testing.T) {
	const declared, sent, streams = 150, 250, 120
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 512)
		keys := 0
		for {
			// As the proxy does before it forwards the body: look at the
			// declared trailer names, again and again while the client
			// sends its trailer block.
			for i := 0; i < 200; i++ {
				for k := range r.Trailer {
					keys += len(k)
				}
			}
			if _, err := r.Body.Read(buf); err != nil {
				break
			}
		}
		withValue := 0
		for _, vs := range r.Trailer {
			if len(vs) == 1 && vs[0] == "v" {
				withValue++
			}
		}
		w.Header().Set("X-Trailers", fmt.Sprintf("%d %d", len(r.Trailer), withValue))
	}), nil)
	names := make([]string, declared)
	for i := range names {
		names[i] = "d" + strconv.Itoa(i)
	}
	block := make([]string, 0, 2*sent)
	for i := 0; i < sent; i++ {
		block = append(block, "d"+strconv.Itoa(i), "v") // d150.. are not declared
	}
	r := ts.dialH2(t)
	for i := 0; i < streams; i++ {
		id := uint32(2*i + 1)
		r.headers(t, id, false, "trailer", strings.Join(names, ","))
		if err := r.fr.WriteData(id, false, []byte("some body")); err != nil {
			t.Fatal(err)
		}
		r.trailerBlock(t, id, block...)
		h := r.answerOn(t, id)
		if got, want := field(h, "x-trailers"), fmt.Sprintf("%d %d", declared, declared); h.PseudoValue("status") != "200" || got != want {
			t.Fatalf("stream %d: status %s, r.Trailer had (names, values) %q; want 200, %q", id, h.PseudoValue("status"), got, want)
		}
	}
}

// TestH2UndeclaredAndForbiddenTrailersDropped: only the trailer fields the
// head declared reach r.Trailer, and never one that may not be a trailer
// (framing, routing, or a field Bulwark sets for the app, in any spelling).
func TestH2UndeclaredAndForbiddenTrailersDropped(t *testing.T) {
	got := make(chan string, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		var fields []string
		for k, vs := range r.Trailer {
			fields = append(fields, k+"="+strings.Join(vs, "|"))
		}
		slices.Sort(fields)
		got <- strings.Join(fields, " ")
	}), nil)
	forbidden := []string{
		"content-length", "host", "te", "trailer", "x-forwarded-for", "x-forwarded-proto",
		"x-forwarded-host", "x-real-ip", "x_forwarded_for", "x_real_ip", "x-forwarded_host", "authorization",
	}
	r := ts.dialH2(t)
	r.headers(t, 1, false, "trailer", "x-ok, "+strings.Join(forbidden, ", "))
	if err := r.fr.WriteData(1, false, []byte("body")); err != nil {
		t.Fatal(err)
	}
	block := []string{"x-ok", "1", "x-undeclared", "2"}
	for _, k := range forbidden {
		v := "7.7.7.7"
		if k == "te" {
			v = "trailers"
		}
		block = append(block, k, v)
	}
	r.trailerBlock(t, 1, block...)
	if h := r.answerOn(t, 1); h.PseudoValue("status") != "200" {
		t.Fatalf("status %s, want 200", h.PseudoValue("status"))
	}
	if g, want := <-got, "X-Ok=1"; g != want {
		t.Errorf("r.Trailer = %q, want %q", g, want)
	}
}
