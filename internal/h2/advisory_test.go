package h2

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Tests for HTTP/2 advisories of x/net and net/http that the other tests
// do not reach; docs/protocol.md maps each advisory to its tests.

// startH2Pipe serves HTTP/2 on one end of a net.Pipe and returns the
// other, after reading the server's first write (SETTINGS and a
// WINDOW_UPDATE). Nothing reads the client end after that unless the
// caller does: a net.Pipe write blocks until it is read.
func startH2Pipe(t *testing.T, o Options) (*Server, net.Conn) {
	t.Helper()
	if o.Handler == nil {
		o.Handler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	}
	srv := NewServer(o)
	cli, sc := net.Pipe()
	t.Cleanup(func() { cli.Close() })
	go srv.ServeConn(sc, nil)
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	fr := http2.NewFramer(nil, cli)
	for i := 0; ; i++ {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's SETTINGS: %v", err)
		}
		if w, ok := f.(*http2.WindowUpdateFrame); ok && w.StreamID == 0 {
			break
		}
		if i > 10 {
			t.Fatal("no SETTINGS and WINDOW_UPDATE from the server")
		}
	}
	return srv, cli
}

// readUntilSettingsAck reads frames from c until a SETTINGS ACK.
func readUntilSettingsAck(t *testing.T, c net.Conn) {
	t.Helper()
	fr := http2.NewFramer(nil, c)
	for i := 0; i < 10; i++ {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the SETTINGS ACK: %v", err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && s.IsAck() {
			return
		}
	}
	t.Fatal("no SETTINGS ACK in 10 frames")
}

// h2Open reports whether srv still tracks an HTTP/2 connection.
func h2Open(srv *Server) bool { return srv.Open() > 0 }

// TestH2ControlFloodWithoutReading: a client that sends frames the server
// must answer (PING, SETTINGS, requests it resets) and never reads the
// answers (CVE-2019-9512, CVE-2019-9514, CVE-2019-9515) cannot make the
// server queue them: it writes each answer itself, without a queue, so
// the first answer that cannot be written stops it reading, and after
// WriteTimeout the connection is closed. It fails if the flood is still
// accepted after 10 s or the connection is not forgotten.
func TestH2ControlFloodWithoutReading(t *testing.T) {
	var enc bytes.Buffer
	henc := hpack.NewEncoder(&enc)
	floods := map[string]func(fr *http2.Framer, i int) error{
		"ping": func(fr *http2.Framer, i int) error {
			return fr.WritePing(false, [8]byte{byte(i)})
		},
		"settings": func(fr *http2.Framer, i int) error {
			return fr.WriteSettings(http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(i + 1)})
		},
		"reset streams": func(fr *http2.Framer, i int) error {
			enc.Reset()
			for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
				{Name: ":path", Value: "/"}, {Name: ":authority", Value: "x"}, {Name: "connection", Value: strconv.Itoa(i)}} {
				henc.WriteField(f)
			}
			return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: enc.Bytes(), EndStream: true, EndHeaders: true})
		},
	}
	for name, send := range floods {
		t.Run(name, func(t *testing.T) {
			srv, cli := startH2Pipe(t, Options{WriteTimeout: 200 * time.Millisecond})
			io.WriteString(cli, http2.ClientPreface)
			fr := http2.NewFramer(cli, nil)
			fr.WriteSettings()
			readUntilSettingsAck(t, cli)
			// From here on nothing is read.
			var err error
			sent := 0
			for sent < 100000 && err == nil {
				if err = send(fr, sent); err == nil {
					sent++
				}
			}
			if err == nil {
				t.Fatalf("%d frames accepted without their answers being read", sent)
			}
			if errors.Is(err, io.ErrClosedPipe) || errors.Is(err, io.EOF) {
				t.Logf("the server closed after %d frames", sent)
			} else {
				t.Fatalf("after %d frames: %v, want the server to close the connection", sent, err)
			}
			if !waitUntil(10*time.Second, func() bool { return !h2Open(srv) }) {
				t.Fatal("the connection is still tracked 10 s after it closed")
			}
		})
	}
}

// TestH2SlowPrefaceTimesOut: a client that sends the connection preface
// slowly, or not at all, is cut off after ReadHeaderTimeout, as Go's
// server failed to for unencrypted HTTP/2 (CVE-2026-56853). It fails if
// the connection is still open 10 s later.
func TestH2SlowPrefaceTimesOut(t *testing.T) {
	srv, cli := startH2Pipe(t, Options{ReadHeaderTimeout: 200 * time.Millisecond})
	if _, err := io.WriteString(cli, http2.ClientPreface[:10]); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, cli)
		done <- err
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection is still open 10 s after a partial preface")
	}
	if !waitUntil(10*time.Second, func() bool { return !h2Open(srv) }) {
		t.Fatal("the connection is still tracked 10 s after it closed")
	}
}
