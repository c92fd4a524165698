package h2

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// floodH2 writes n streams from stream id first on, each a HEADERS (with a
// body to come when body is set) and then what then(id) writes, in batches;
// it returns the first write error (the server closed) or nil.
func floodH2(r *h2Raw, first uint32, n int, body bool, then func(fr *http2.Framer, id uint32) error) error {
	bw := bufio.NewWriterSize(r.c, 64<<10)
	fr := http2.NewFramer(bw, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for i := 0; i < n; i++ {
		id := first + uint32(2*i)
		hb.Reset()
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":path", "/"}, {":authority", "x"}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: !body, EndHeaders: true}); err != nil {
			return err
		}
		if then != nil {
			if err := then(fr, id); err != nil {
				return err
			}
		}
		if i%64 == 63 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// goAwayThenClose reads frames until a GOAWAY and returns it, then checks
// that the server closes the connection. It reads at most max frames.
func goAwayThenClose(t *testing.T, r *h2Raw, max int) *http2.GoAwayFrame {
	t.Helper()
	var ga *http2.GoAwayFrame
	for i := 0; i < max; i++ {
		f, err := r.fr.ReadFrame()
		if err != nil {
			if ga == nil {
				t.Fatalf("read frame: %v, before any GOAWAY", err)
			}
			return ga
		}
		if g, ok := f.(*http2.GoAwayFrame); ok && ga == nil {
			ga = g
		}
	}
	if ga == nil {
		t.Fatalf("no GOAWAY in %d frames", max)
	}
	t.Fatalf("the connection is still open %d frames after the GOAWAY", max)
	return nil
}

// TestH2RapidResetEndsConnection: 20 000 HEADERS+RST_STREAM pairs on one
// connection (CVE-2023-44487) end it with GOAWAY ENHANCE_YOUR_CALM, and
// reach the handler only a few times (before the limit, 1 010 requests
// reached the app and the flood went on).
func TestH2RapidResetEndsConnection(t *testing.T) {
	var calls atomic.Int64
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select { // as the proxy would: until the client is gone
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}), nil)
	r := ts.dialH2(t)
	werr := make(chan error, 1)
	go func() {
		werr <- floodH2(r, 1, 20000, false, func(fr *http2.Framer, id uint32) error {
			return fr.WriteRSTStream(id, http2.ErrCodeCancel)
		})
	}()
	ga := goAwayThenClose(t, r, 100000)
	if ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("GOAWAY %v, want ENHANCE_YOUR_CALM", ga.ErrCode)
	}
	r.c.Close()
	<-werr
	if n := calls.Load(); n > 200 {
		t.Errorf("the handler ran %d times, want at most 200", n)
	} else {
		t.Logf("the handler ran %d times; GOAWAY last stream %d", n, ga.LastStreamID)
	}
	if got := ts.m.rejectedCount("h2_rapid_reset"); got != 1 {
		t.Errorf("h2_rapid_reset counted %d times, want 1", got)
	}
}

// TestH2MadeYouResetEndsConnection is CVE-2025-8671: a client that makes
// the server reset its streams (here a WINDOW_UPDATE of 0, a stream
// error) instead of resetting them itself is charged the same way, and
// ends with GOAWAY ENHANCE_YOUR_CALM after a bounded number of handlers.
func TestH2MadeYouResetEndsConnection(t *testing.T) {
	var calls atomic.Int64
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select { // as the proxy would: until the client is gone
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}), nil)
	r := ts.dialH2(t)
	werr := make(chan error, 1)
	go func() {
		werr <- floodH2(r, 1, 20000, true, func(fr *http2.Framer, id uint32) error {
			fr.AllowIllegalWrites = true // an increment of 0 is the point
			return fr.WriteWindowUpdate(id, 0)
		})
	}()
	ga := goAwayThenClose(t, r, 100000)
	if ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("GOAWAY %v, want ENHANCE_YOUR_CALM", ga.ErrCode)
	}
	r.c.Close()
	<-werr
	if n := calls.Load(); n > 400 {
		t.Errorf("the handler ran %d times, want at most 400", n)
	}
	if got := ts.m.rejectedCount("h2_rapid_reset"); got != 1 {
		t.Errorf("h2_rapid_reset counted %d times, want 1", got)
	}
}

// TestH2SomeResetsAllowed: a client that cancels everything it has in
// flight once (a browser leaving a page) keeps its connection.
func TestH2SomeResetsAllowed(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Last") == "" {
			<-r.Context().Done()
		}
	}), nil)
	r := ts.dialH2(t)
	if err := floodH2(r, 1, DefaultMaxConcurrentStreams, false, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < DefaultMaxConcurrentStreams; i++ {
		if err := r.fr.WriteRSTStream(uint32(2*i+1), http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
	}
	id := uint32(2*DefaultMaxConcurrentStreams + 1)
	r.headers(t, id, true, "x-last", "1")
	for i := 0; i < 100; i++ {
		f := r.next(t)
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			t.Fatalf("got GOAWAY %v after %d resets", ga.ErrCode, DefaultMaxConcurrentStreams)
		}
		if f.Header().StreamID == id {
			return // the handler is running: no GOAWAY came first
		}
	}
}

// TestH2BodiesInFlightCapped: one connection may have at most h2MaxBodies
// streams whose request body is still arriving; a stream with a body past
// that is refused, one without a body is served, and a body that ends
// makes room (issue 14 §2: 100 trickled bodies a connection took hundreds
// of MB).
func TestH2BodiesInFlightCapped(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}), nil)
	r := ts.dialH2(t)
	for i := 0; i < h2MaxBodies; i++ {
		r.headers(t, uint32(2*i+1), false)
		if err := r.fr.WriteData(uint32(2*i+1), false, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	over := uint32(2*h2MaxBodies + 1)
	r.headers(t, over, false)
	f := r.next(t)
	if rst, ok := f.(*http2.RSTStreamFrame); !ok || rst.StreamID != over || rst.ErrCode != http2.ErrCodeRefusedStream {
		t.Fatalf("stream %d with a body past %d: got %v, want RST_STREAM REFUSED_STREAM", over, h2MaxBodies, f)
	}
	if got := ts.m.rejectedCount("h2_bodies_per_conn"); got != 1 {
		t.Errorf("h2_bodies_per_conn counted %d times, want 1", got)
	}
	// A request without a body is still served.
	r.headers(t, over+2, true)
	if h := r.answerOn(t, over+2); h.PseudoValue("status") != "200" {
		t.Errorf("request without a body: status %s, want 200", h.PseudoValue("status"))
	}
	// One body ends: a new one fits.
	if err := r.fr.WriteData(1, true, nil); err != nil {
		t.Fatal(err)
	}
	r.headers(t, over+4, false)
	if err := r.fr.WriteData(over+4, true, []byte("y")); err != nil {
		t.Fatal(err)
	}
	if h := r.answerOn(t, over+4); h.PseudoValue("status") != "200" {
		t.Errorf("body after one ended: status %s, want 200", h.PseudoValue("status"))
	}
}
