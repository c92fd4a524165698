package h2

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestH2NoFramesAfterReset: once the server has reset a stream (here for a
// body longer than its content-length), it must send nothing more on it
// (RFC 9113 5.1: no frames but PRIORITY on a closed stream; a strict client
// may take one as a connection error, STREAM_CLOSED, and so lose its
// other streams). Found by FuzzH2VerdictMatchesXNet: h2Response.finish
// sent the answer's HEADERS on the reset stream, until writes went through
// writeStream, which checks that the stream is not over.
func TestH2NoFramesAfterReset(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	m := &testMetrics{}
	srv := NewServer(Options{Metrics: m, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release // returns without reading the body or writing anything
	})})
	cli, sc := net.Pipe()
	defer cli.Close()
	go srv.ServeConn(sc, nil)
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	frames := make(chan http2.Frame, 64)
	go func() {
		defer close(frames)
		fr := http2.NewFramer(nil, cli)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			frames <- f
		}
	}()
	io.WriteString(cli, http2.ClientPreface)
	fr := http2.NewFramer(cli, nil)
	fr.WriteSettings()
	var blk bytes.Buffer
	enc := hpack.NewEncoder(&blk)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"},
		{Name: ":path", Value: "/"}, {Name: ":authority", Value: "x"}, {Name: "content-length", Value: "1"}} {
		enc.WriteField(f)
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk.Bytes(), EndHeaders: true})
	<-started
	fr.WriteData(1, true, []byte("too long")) // past content-length: the server resets stream 1
	reset := false
	for f := range frames {
		if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.StreamID == 1 {
			reset = true
			close(release)
			// Once the handler's stream is retired, a PING marks where
			// everything the server sends on it has been sent.
			if !waitUntil(10*time.Second, func() bool { return m.streamCount() == 0 }) {
				t.Fatal("the stream is still counted 10 s after its handler was released")
			}
			fr.WritePing(false, [8]byte{1})
			continue
		}
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() && p.Data == [8]byte{1} {
			break
		}
		if reset && f.Header().StreamID == 1 {
			t.Errorf("after RST_STREAM on stream 1 the server sent %v", f)
		}
	}
	if !reset {
		t.Fatal("the server did not reset stream 1")
	}
}

// TestH2ShortGoAwayIsFrameSizeError: a GOAWAY too short for its last
// stream ID and error code is a connection error FRAME_SIZE_ERROR (RFC
// 9113 4.2, 6.8). Found by FuzzH2VerdictMatchesXNet: it was ignored.
func TestH2ShortGoAwayIsFrameSizeError(t *testing.T) {
	ts := start(t, echoHandler(), nil)
	r := ts.dialH2(t)
	if err := r.fr.WriteRawFrame(http2.FrameGoAway, 0, 0, []byte{0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	ga, ok := r.next(t).(*http2.GoAwayFrame)
	if !ok || ga.ErrCode != http2.ErrCodeFrameSize {
		t.Fatalf("got %v, want GOAWAY FRAME_SIZE_ERROR", ga)
	}
}

// TestH2FramesOnEvenStreamsAreIdle: an even stream ID is a server stream,
// and the server opens none, so DATA, WINDOW_UPDATE or RST_STREAM on one
// is a frame on an idle stream, a connection error PROTOCOL_ERROR (RFC 9113
// 5.1, 5.1.1), even below the highest stream the client opened. Found by
// FuzzH2VerdictMatchesXNet: only IDs above that one counted as idle.
func TestH2FramesOnEvenStreamsAreIdle(t *testing.T) {
	for name, send := range map[string]func(fr *http2.Framer) error{
		"DATA":          func(fr *http2.Framer) error { return fr.WriteData(2, false, []byte("x")) },
		"WINDOW_UPDATE": func(fr *http2.Framer) error { return fr.WriteWindowUpdate(2, 1) },
		"RST_STREAM":    func(fr *http2.Framer) error { return fr.WriteRSTStream(2, http2.ErrCodeCancel) },
	} {
		t.Run(name, func(t *testing.T) {
			ts := start(t, echoHandler(), nil)
			r := ts.dialH2(t)
			r.headers(t, 3, true)
			for { // stream 3's answer, whole
				if d, ok := r.next(t).(*http2.DataFrame); ok && d.StreamEnded() {
					break
				}
			}
			if err := send(r.fr); err != nil {
				t.Fatal(err)
			}
			ga, ok := r.next(t).(*http2.GoAwayFrame)
			if !ok || ga.ErrCode != http2.ErrCodeProtocol {
				t.Fatalf("after %s on stream 2: got %v, want GOAWAY PROTOCOL_ERROR", name, ga)
			}
		})
	}
}
