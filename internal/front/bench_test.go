package front

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"bulwark/internal/listen"
)

// BenchmarkH1KeepAlive measures one keep-alive HTTP/1.1 request over TLS
// through the connection loop, with a handler writing 1 KiB.
func BenchmarkH1KeepAlive(b *testing.B) {
	body := make([]byte, 1024)
	ts := startBench(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1024")
		w.Write(body)
	}))
	c, err := tls.Dial("tcp", ts.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}

// BenchmarkH2Stream measures one HTTP/2 request over TLS through the h2
// connection loop (reader, stream worker, frame writes), with a handler
// writing 1 KiB. The client is a raw framer sending a pre-encoded head, so
// that its own allocations stay small.
func BenchmarkH2Stream(b *testing.B) {
	body := make([]byte, 1024)
	ts := startBench(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1024")
		w.Write(body)
	}))
	c, err := tls.Dial("tcp", ts.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":path", "/"}, {":authority", "localhost"}, {"user-agent", "bench"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := uint32(2*i + 1)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			b.Fatal(err)
		}
		for done := false; !done; {
			f, err := fr.ReadFrame()
			if err != nil {
				b.Fatal(err)
			}
			switch f := f.(type) {
			case *http2.DataFrame:
				done = f.StreamEnded()
				if n := len(f.Data()); n > 0 {
					fr.WriteWindowUpdate(0, uint32(n))
				}
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
			}
		}
	}
}

// BenchmarkIdleConnMemory opens b.N idle TLS connections (each after one
// request) and reports the heap and stack they hold, per connection. It
// measures this process's Go memory, client side included, not RSS: the
// repo benchmark in bench/ measures RSS against nginx. Use -benchtime=2000x
// for a stable figure.
func BenchmarkIdleConnMemory(b *testing.B) {
	for _, proto := range []string{"http/1.1", "h2"} {
		b.Run(proto, func(b *testing.B) {
			ts := startBench(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
			before := goMemory()
			conns := make([]net.Conn, 0, b.N)
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for j := 0; j < b.N; j++ {
				c, err := tls.Dial("tcp", ts.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{proto}})
				if err != nil {
					b.Fatal(err)
				}
				conns = append(conns, c)
				if proto == "h2" {
					h2Request(b, c)
					continue
				}
				fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				res, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
			}
			b.StopTimer()
			time.Sleep(200 * time.Millisecond)
			b.ReportMetric(float64(goMemory()-before)/float64(b.N)/1024, "KiB/conn")
		})
	}
}

// goMemory is the heap in use plus goroutine stacks, after a GC. The
// client side of the connections lives in this process too, so the figure
// is an upper bound for the server side alone.
func goMemory() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

func h2Request(b *testing.B, c net.Conn) {
	tr := &http2.Transport{}
	cc, err := tr.NewClientConn(c)
	if err != nil {
		b.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "https://localhost/", nil)
	res, err := cc.RoundTrip(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
}

func startBench(b *testing.B, h http.Handler) *testServer {
	b.Helper()
	srv, err := New(Options{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{selfSigned(b)}, NextProtos: []string{"h2", "http/1.1"}}})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := listen.TCP(b.Context(), "127.0.0.1:0", 4096)
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return &testServer{srv: srv, addr: ln.Addr().String()}
}
