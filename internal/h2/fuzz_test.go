package h2

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzH2Frames feeds the HTTP/2 server frame sequences built from fuzzed
// instructions (h2Program), over a net.Pipe, after the preface and an
// empty SETTINGS. Invariants, each checked on every input:
//
//   - no panic (a panic in the server's reader goroutine kills the test
//     binary), and no data race when run under -race (go test runs the
//     seeds below as ordinary tests);
//   - every frame the server sends parses (x/net's Framer and HPACK);
//   - the server has processed everything sent, or ended the connection,
//     when a final PING is answered (or the connection ends);
//   - once the client closes the connection: the server forgets it, every
//     handler that started returns, and no goroutine of package front
//     that the input started is left, but idle stream workers (which exit
//     on their own after idleHandoff).
func FuzzH2Frames(f *testing.F) {
	for _, s := range h2Seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		runH2Program(t, prog)
	})
}

// Operations of an h2Program. Each is one byte (taken modulo h2OpCount)
// followed by its operands; an exhausted program reads zeros.
const (
	opHeaders      = iota // stream, flags, method, path, extra field, split
	opData                // stream, flags, length
	opRSTStream           // stream, code
	opSettings            // ack, count, then per setting: id, value (4 bytes)
	opPing                // ack, 8 bytes
	opWindowUpdate        // stream, increment (4 bytes)
	opPriority            // stream, dependency stream, weight
	opGoAway              // last stream, code
	opContinuation        // stream, end headers, extra field
	opRaw                 // type (0-15), flags, stream, length, payload
	opRawHeaders          // stream, flags, length, HPACK bytes
	h2OpCount
)

// h2FuzzStreams are the stream IDs an operand byte picks from: the
// client's first ones, stream 0, even (server) IDs, and the largest.
var h2FuzzStreams = []uint32{1, 3, 5, 7, 0, 2, 9, 11, 1<<31 - 1, 13}

var h2FuzzMethods = []string{"GET", "POST", "HEAD", "CONNECT", "OPTIONS", "", "G T", "PUT"}

// h2FuzzPaths select the handler's behaviour (h2FuzzHandler).
var h2FuzzPaths = []string{"/", "/wait", "/big", "/panic", "/trailer", "/early", "*", "", "relative", "/%zz"}

// h2FuzzExtras are single fields added to a request head: the malformed
// ones of TestH2MalformedRequestsReset and RFC 9113 8.2-8.3, and others
// that change how a stream runs.
var h2FuzzExtras = []hpack.HeaderField{
	{},
	{Name: "connection", Value: "keep-alive"},
	{Name: "te", Value: "gzip"},
	{Name: "te", Value: "trailers"},
	{Name: "X-Up", Value: "1"},
	{Name: "content-length", Value: "1"},
	{Name: "content-length", Value: "x"},
	{Name: "host", Value: "other"},
	{Name: ":path", Value: "/again"},
	{Name: ":status", Value: "200"},
	{Name: "expect", Value: "100-continue"},
	{Name: "trailer", Value: "x-t"},
	{Name: "cookie", Value: "a=1"},
	{Name: "x-big", Value: strings.Repeat("b", 1500)},
	{Name: "x-nul", Value: "a\x00b"},
	{Name: "transfer-encoding", Value: "chunked"},
	{Name: "upgrade", Value: "h2c"},
	{Name: "", Value: "empty name"},
}

// h2Cursor reads an h2Program.
type h2Cursor struct {
	b []byte
}

func (c *h2Cursor) byte() byte {
	if len(c.b) == 0 {
		return 0
	}
	v := c.b[0]
	c.b = c.b[1:]
	return v
}

func (c *h2Cursor) u32() uint32 {
	return uint32(c.byte())<<24 | uint32(c.byte())<<16 | uint32(c.byte())<<8 | uint32(c.byte())
}

func (c *h2Cursor) bytes(n int) []byte {
	n = min(n, len(c.b))
	v := c.b[:n]
	c.b = c.b[n:]
	return v
}

func (c *h2Cursor) stream() uint32 {
	return h2FuzzStreams[int(c.byte())%len(h2FuzzStreams)]
}

// h2Frames builds the frames prog describes, after the client preface
// and an empty SETTINGS. The HPACK encoder is the connection's: its
// dynamic table stays in step with the server's decoder.
func h2Frames(prog []byte) []byte {
	var out bytes.Buffer
	out.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&out, nil)
	fr.AllowIllegalWrites = true
	fr.WriteSettings()
	var blk bytes.Buffer
	enc := hpack.NewEncoder(&blk)
	c := &h2Cursor{b: prog}
	for n := 0; len(c.b) > 0 && n < 64; n++ {
		switch c.byte() % h2OpCount {
		case opHeaders:
			id, flags := c.stream(), c.byte()
			method := h2FuzzMethods[int(c.byte())%len(h2FuzzMethods)]
			path := h2FuzzPaths[int(c.byte())%len(h2FuzzPaths)]
			extra := h2FuzzExtras[int(c.byte())%len(h2FuzzExtras)]
			split := int(c.byte())
			blk.Reset()
			for _, hf := range []hpack.HeaderField{{Name: ":method", Value: method}, {Name: ":scheme", Value: "https"}, {Name: ":path", Value: path}, {Name: ":authority", Value: "x"}} {
				if hf.Value != "" || flags&0x40 != 0 {
					enc.WriteField(hf)
				}
			}
			if extra.Name != "" || extra.Value != "" {
				enc.WriteField(extra)
			}
			block := blk.Bytes()
			// A split sends the rest of the block in a CONTINUATION.
			first, rest := block, []byte(nil)
			if split > 0 && split < len(block) {
				first, rest = block[:split], block[split:]
			}
			p := http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: flags&1 != 0, EndHeaders: rest == nil && flags&2 == 0}
			if flags&8 != 0 {
				p.PadLength = flags >> 4
			}
			if flags&0x20 != 0 {
				p.Priority = http2.PriorityParam{StreamDep: id, Weight: 15} // depends on itself
			}
			fr.WriteHeaders(p)
			if rest != nil {
				fr.WriteContinuation(id, flags&2 == 0, rest)
			}
		case opData:
			id, flags, n := c.stream(), c.byte(), int(c.byte())
			data := bytes.Repeat([]byte("d"), n*int(1+flags>>5)*8)
			if flags&8 != 0 {
				fr.WriteDataPadded(id, flags&1 != 0, data, make([]byte, flags&7))
			} else {
				fr.WriteData(id, flags&1 != 0, data)
			}
		case opRSTStream:
			fr.WriteRSTStream(c.stream(), http2.ErrCode(c.byte()%14))
		case opSettings:
			if c.byte()%2 == 1 {
				fr.WriteSettingsAck()
				break
			}
			var ss []http2.Setting
			for i := int(c.byte()) % 4; i > 0; i-- {
				ss = append(ss, http2.Setting{ID: http2.SettingID(c.byte() % 8), Val: c.u32()})
			}
			fr.WriteSettings(ss...)
		case opPing:
			ack := c.byte()%2 == 1
			var data [8]byte
			copy(data[:], c.bytes(8))
			fr.WritePing(ack, data)
		case opWindowUpdate:
			fr.WriteWindowUpdate(c.stream(), c.u32()&(1<<31-1))
		case opPriority:
			id, dep, w := c.stream(), c.stream(), c.byte()
			fr.WritePriority(id, http2.PriorityParam{StreamDep: dep, Weight: w, Exclusive: w&1 == 1})
		case opGoAway:
			fr.WriteGoAway(c.stream(), http2.ErrCode(c.byte()%14), nil)
		case opContinuation:
			id, end := c.stream(), c.byte()%2 == 1
			extra := h2FuzzExtras[int(c.byte())%len(h2FuzzExtras)]
			extra.Sensitive = true // never indexed: every fragment costs its size
			blk.Reset()
			enc.WriteField(extra)
			fr.WriteContinuation(id, end, blk.Bytes())
		case opRaw:
			typ, flags, id, n := c.byte()%16, c.byte(), c.stream(), int(c.byte())
			fr.WriteRawFrame(http2.FrameType(typ), http2.Flags(flags), id, c.bytes(n))
		case opRawHeaders:
			id, flags, n := c.stream(), c.byte(), int(c.byte())
			fr.WriteRawFrame(http2.FrameHeaders, http2.Flags(flags&^0x28), id, c.bytes(n))
		}
	}
	return out.Bytes()
}

// h2FuzzCounters count the handler runs of one connection.
type h2FuzzCounters struct {
	entered, returned, stuck atomic.Int32
}

// h2FuzzHandler serves by path: "/wait" until the request is canceled,
// "/big" more than a stream window, "/panic" panics, "/trailer" sends
// trailers, "/early" a 103 first; any other reads the body and answers.
func h2FuzzHandler(n *h2FuzzCounters) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.entered.Add(1)
		defer n.returned.Add(1)
		switch r.URL.Path {
		case "/wait":
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
				n.stuck.Add(1)
			}
		case "/big":
			w.Write(bytes.Repeat([]byte("x"), 100<<10))
		case "/panic":
			panic("fuzz handler panic")
		case "/trailer":
			w.Header().Set("Trailer", "X-T")
			io.Copy(io.Discard, r.Body)
			w.Write([]byte("t"))
			w.Header().Set("X-T", "1")
		case "/early":
			w.Header().Set("Link", "</a>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.(http.Flusher).Flush()
			io.Copy(io.Discard, r.Body)
		default:
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%d", len(b))
		}
	})
}

// h2Ping is the payload of the PING that ends every program.
var h2Ping = [8]byte{'b', 'u', 'l', 'w', 'a', 'r', 'k', '!'}

// runH2Program runs one connection through prog and checks the
// invariants FuzzH2Frames lists.
func runH2Program(t *testing.T, prog []byte) {
	before := goroutineIDs()
	var n h2FuzzCounters
	srv := NewServer(Options{
		Handler:              h2FuzzHandler(&n),
		MaxHeaderBytes:       1024,
		MaxConcurrentStreams: 3,
		BodyReadTimeout:      2 * time.Second,
		WriteTimeout:         5 * time.Second,
		ReadHeaderTimeout:    5 * time.Second,
	})
	in := h2Frames(prog)
	driveH2(t, func(c net.Conn) { srv.ServeConn(c, nil) }, in)

	ok := waitUntil(10*time.Second, func() bool {
		return srv.Open() == 0 && n.entered.Load() == n.returned.Load()
	})
	if !ok {
		open := srv.Open()
		t.Fatalf("10 s after the client closed: %d connections tracked, %d of %d handlers returned (input %x)",
			open, n.returned.Load(), n.entered.Load(), in)
	}
	if s := n.stuck.Load(); s > 0 {
		t.Fatalf("%d handlers waited 10 s for a cancellation that never came", s)
	}
	var left []string
	if !waitUntil(10*time.Second, func() bool { left = leftGoroutines(before); return len(left) == 0 }) {
		t.Fatalf("goroutines left behind after the connection closed:\n%s", strings.Join(left, "\n\n"))
	}
}

// driveH2 runs serve on one end of a net.Pipe, sends in and a final PING
// on the other, waits for the PING's answer, a GOAWAY with an error or the
// end of the connection, and closes it. It fails t if a frame from the
// server does not parse, and returns the error code of the first GOAWAY
// the server sent, closedWithoutGoAway, or -1.
func driveH2(t *testing.T, serve func(net.Conn), in []byte) (goAway int) {
	return driveH2Server(t, serve, in, true)
}

// driveH2Server is driveH2; afterReset false leaves out the check for
// HEADERS or DATA after the server's RST_STREAM, which x/net's server
// does not always pass (a handler's answer queued before its reset may
// still go out), for the differential target's run of it.
func driveH2Server(t *testing.T, serve func(net.Conn), in []byte, afterReset bool) (goAway int) {
	t.Helper()
	cli, sc := net.Pipe()
	go serve(sc)

	// The reader checks the server's frames and notes the final PING's
	// answer; it ends when the connection does.
	acked := make(chan struct{})
	readErr := make(chan error, 1)
	var code atomic.Int32
	code.Store(-1)
	go func() {
		fr := http2.NewFramer(nil, cli)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		var once sync.Once
		resetIDs := make(map[uint32]bool) // streams the server reset
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, io.ErrUnexpectedEOF) {
					err = nil
				}
				readErr <- err
				return
			}
			// HEADERS or DATA after the server's own RST_STREAM (a second
			// RST_STREAM is harmless: receivers ignore it).
			h := f.Header()
			if afterReset && resetIDs[h.StreamID] && (h.Type == http2.FrameHeaders || h.Type == http2.FrameData) {
				readErr <- fmt.Errorf("%v on stream %d after its RST_STREAM", h, h.StreamID)
				return
			}
			switch f := f.(type) {
			case *http2.PingFrame:
				if f.IsAck() && f.Data == h2Ping {
					once.Do(func() { close(acked) })
				}
			case *http2.RSTStreamFrame:
				resetIDs[f.StreamID] = true
				continue
			case *http2.GoAwayFrame:
				code.CompareAndSwap(-1, int32(f.ErrCode))
				if f.ErrCode != http2.ErrCodeNo {
					// The verdict is in; x/net would linger a second.
					once.Do(func() { close(acked) })
				}
			}
		}
	}()

	cli.SetWriteDeadline(time.Now().Add(10 * time.Second))
	var ping bytes.Buffer
	http2.NewFramer(&ping, nil).WritePing(false, h2Ping)
	// A server that stops reading after a connection error blocks the
	// write (a net.Pipe has no buffer) until it closes.
	wrote := make(chan struct{})
	go func() {
		cli.Write(append(in[:len(in):len(in)], ping.Bytes()...))
		close(wrote)
	}()
	closed := false
	select {
	case <-acked:
	case err := <-readErr:
		readErr <- err // the server ended the connection
		closed = true
	case <-time.After(10 * time.Second):
		t.Fatalf("the server neither answered the final PING nor closed in 10 s (input %x)", in)
	}
	cli.Close()
	<-wrote
	if err := <-readErr; err != nil {
		t.Fatalf("the server sent a frame that does not parse: %v (input %x)", err, in)
	}
	if c := int(code.Load()); c >= 0 || !closed {
		return c
	}
	return closedWithoutGoAway
}

// closedWithoutGoAway is what driveH2 returns when the server closed the
// connection before answering the final PING without sending a GOAWAY:
// also a verdict against the client (x/net closes so on a frame its
// Framer cannot parse, such as a PUSH_PROMISE too short for its ID).
const closedWithoutGoAway = -2

// waitUntil polls cond until it holds or d has passed, and reports
// whether it held.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// goroutineStacks returns the stack of every goroutine, by ID.
func goroutineStacks() map[int64]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	stacks := make(map[int64]string)
	for _, g := range strings.Split(string(buf), "\n\n") {
		rest, ok := strings.CutPrefix(g, "goroutine ")
		if !ok {
			continue
		}
		id, _, _ := strings.Cut(rest, " ")
		if n, err := strconv.ParseInt(id, 10, 64); err == nil {
			stacks[n] = g
		}
	}
	return stacks
}

func goroutineIDs() map[int64]bool {
	ids := make(map[int64]bool)
	for id := range goroutineStacks() {
		ids[id] = true
	}
	return ids
}

// leftGoroutines returns the stacks of goroutines not in before that run
// code of package front, but idle stream workers.
func leftGoroutines(before map[int64]bool) []string {
	var left []string
	for id, s := range goroutineStacks() {
		if before[id] {
			continue
		}
		frames, _, _ := strings.Cut(s, "\ncreated by ")
		if !strings.Contains(frames, "bulwark/internal/h2.") {
			continue
		}
		if strings.Contains(frames, "h2.(*Server).streamWorker") && !strings.Contains(frames, "h2.(*h2Conn).runStream") {
			continue // idle: it exits after idleHandoff
		}
		left = append(left, s)
	}
	return left
}
