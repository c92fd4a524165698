package spool

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"bulwark/internal/httperr"

	"github.com/VictoriaMetrics/metrics"
)

// seen is what the next handler observed of a request.
type seen struct {
	contentLength int64
	te            []string
	headerCL      string
	expect        string
	sum           [32]byte
	replaySum     [32]byte
	n             int64
	err           error
}

// recordingNext returns a next handler that reads the body, replays it
// through GetBody, answers 200 and sends what it saw on the channel.
func recordingNext() (http.Handler, <-chan seen, *atomic.Int32) {
	ch := make(chan seen, 4)
	calls := new(atomic.Int32)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		sn := seen{
			contentLength: r.ContentLength,
			te:            r.TransferEncoding,
			headerCL:      r.Header.Get("Content-Length"),
			expect:        r.Header.Get("Expect"),
		}
		h := sha256.New()
		sn.n, sn.err = io.Copy(h, r.Body)
		copy(sn.sum[:], h.Sum(nil))
		if r.GetBody != nil {
			rc, err := r.GetBody()
			if err == nil {
				h.Reset()
				io.Copy(h, rc)
				copy(sn.replaySum[:], h.Sum(nil))
			}
		}
		ch <- sn
		if sn.err != nil {
			httperr.Write(w, r, sn.err)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	return h, ch, calls
}

// hideLength wraps b so the client cannot know its length: it sends it
// chunked.
func hideLength(b []byte) io.Reader { return io.MultiReader(bytes.NewReader(b)) }

func TestRequests_NoBodyPassesThrough(t *testing.T) {
	s := newTestSpool(t, Options{BufferRequests: true, MaxBody: 10})
	var got *http.Request
	h := s.Requests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r }))
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if got != req {
		t.Errorf("next got a different request for a GET without body, want the same")
	}
	if allocs := testing.AllocsPerRun(100, func() { h.ServeHTTP(rec, req) }); allocs != 0 {
		t.Errorf("Requests on a GET without body allocates %v times, want 0", allocs)
	}
}

func TestRequests_Spooled(t *testing.T) {
	const per = 64 << 10
	tests := []struct {
		name    string
		size    int
		chunked bool
		h2      bool
	}{
		{"small content-length", 10, false, false},
		{"exactly memory content-length", per, false, false},
		{"spills content-length", 300 << 10, false, false},
		{"empty chunked", 0, true, false},
		{"small chunked", 10, true, false},
		{"spills chunked", 300 << 10, true, false},
		{"h2 spills content-length", 300 << 10, false, true},
		{"h2 spills no length", 300 << 10, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := metrics.NewSet()
			s := newTestSpool(t, Options{BufferRequests: true, MemoryPerBody: per, Metrics: set})
			next, seenc, _ := recordingNext()
			srv, done := serveProto(t, tt.h2, s.Requests(next))
			body := pattern(tt.size)
			var r io.Reader = bytes.NewReader(body)
			if tt.chunked {
				r = hideLength(body)
			}
			resp, err := srv.Client().Post(srv.URL, "application/octet-stream", r)
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[tt.h2] {
				t.Fatalf("answer %d over %s, want 200 over HTTP/%d", resp.StatusCode, resp.Proto, map[bool]int{false: 1, true: 2}[tt.h2])
			}
			sn := <-seenc
			waitDone(t, done, "spooled request")
			want := sha256.Sum256(body)
			if sn.err != nil || sn.n != int64(tt.size) || sn.sum != want {
				t.Errorf("next read %d bytes, err %v, matching %v; want %d identical bytes", sn.n, sn.err, sn.sum == want, tt.size)
			}
			if sn.replaySum != want {
				t.Errorf("GetBody replay differs from the body")
			}
			if sn.contentLength != int64(tt.size) || sn.headerCL != strconv.Itoa(tt.size) || sn.te != nil {
				t.Errorf("next saw ContentLength %d, Content-Length %q, TransferEncoding %q; want %d, %q, none",
					sn.contentLength, sn.headerCL, sn.te, tt.size, strconv.Itoa(tt.size))
			}
			assertClean(t, s)
			where := "memory"
			if tt.size > per {
				where = "disk"
			}
			if tt.size > 0 {
				series := `bulwark_spool_bodies_total{kind="request",where="` + where + `"}`
				if got := metricValue(t, set, series); got != 1 {
					t.Errorf("%s = %v, want 1", series, got)
				}
			}
		})
	}
}

func TestRequests_MaxBody(t *testing.T) {
	const max = 100 << 10 // past MemoryPerBody, so the disk is involved
	for _, buffer := range []bool{true, false} {
		for _, tt := range []struct {
			name    string
			size    int
			chunked bool
			want    int
		}{
			{"exactly max content-length", max, false, http.StatusOK},
			{"one over content-length", max + 1, false, http.StatusRequestEntityTooLarge},
			{"exactly max chunked", max, true, http.StatusOK},
			{"one over chunked", max + 1, true, http.StatusRequestEntityTooLarge},
		} {
			t.Run(fmt.Sprintf("buffer=%v/%s", buffer, tt.name), func(t *testing.T) {
				set := metrics.NewSet()
				s := newTestSpool(t, Options{BufferRequests: buffer, MemoryPerBody: 32 << 10, MaxBody: max, Metrics: set})
				next, seenc, calls := recordingNext()
				resp := postPattern(t, s.Requests(next), tt.size, tt.chunked, tt.name)
				if resp.StatusCode != tt.want {
					t.Errorf("status = %d, want %d", resp.StatusCode, tt.want)
				}
				if tt.want == http.StatusRequestEntityTooLarge {
					if got := resp.Header.Get("X-Bulwark-Error"); got != "body_too_large" {
						t.Errorf("X-Bulwark-Error = %q, want body_too_large", got)
					}
					if got := metricValue(t, set, `bulwark_spool_rejected_total{reason="body_too_large"}`); got != 1 {
						t.Errorf("rejected body_too_large = %v, want 1", got)
					}
					// Buffered, or declared too large: next never runs.
					// Passed through chunked: next runs and its read fails.
					if buffer || !tt.chunked {
						if got := calls.Load(); got != 0 {
							t.Errorf("next called %d times for a body over max, want 0", got)
						}
					} else if sn := <-seenc; !errors.As(sn.err, new(*httperr.Error)) {
						t.Errorf("next's read error = %v, want an *httperr.Error", sn.err)
					}
				} else if sn := <-seenc; sn.n != int64(tt.size) || sn.err != nil {
					t.Errorf("next read %d bytes, err %v; want %d, nil", sn.n, sn.err, tt.size)
				}
				assertClean(t, s)
			})
		}
	}
}

func TestRequests_ExpectContinue(t *testing.T) {
	tests := []struct {
		name         string
		size         int
		wantStatus   int
		wantContinue bool
	}{
		{"body read, 100 sent", 1000, http.StatusOK, true},
		{"declared too large, refused before reading", 5000, http.StatusRequestEntityTooLarge, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestSpool(t, Options{BufferRequests: true, MaxBody: 4000})
			next, seenc, _ := recordingNext()
			srv, done := serve(t, s.Requests(next))
			tr := &http.Transport{ExpectContinueTimeout: waitLimit}
			defer tr.CloseIdleConnections()
			var got100 atomic.Bool
			req, err := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(pattern(tt.size)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Expect", "100-continue")
			req = req.WithContext(httptrace.WithClientTrace(req.Context(),
				&httptrace.ClientTrace{Got100Continue: func() { got100.Store(true) }}))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			resp.Body.Close()
			waitDone(t, done, tt.name)
			if resp.StatusCode != tt.wantStatus || got100.Load() != tt.wantContinue {
				t.Errorf("status %d, got 100 Continue %v; want %d, %v", resp.StatusCode, got100.Load(), tt.wantStatus, tt.wantContinue)
			}
			if tt.wantStatus == http.StatusOK {
				if sn := <-seenc; sn.expect != "" || sn.n != int64(tt.size) {
					t.Errorf("next saw Expect %q and %d bytes; want no Expect and %d bytes", sn.expect, sn.n, tt.size)
				}
			}
		})
	}
}

// rawRequest opens a TCP connection to srv and writes head.
func rawRequest(t *testing.T, srv *httptest.Server, head string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRequests_ClientAbortsMidUpload(t *testing.T) {
	tests := []struct {
		name string
		head string
		body []byte
	}{
		{"content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n", pattern(300 << 10)},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
			append([]byte(fmt.Sprintf("%x\r\n", 300<<10)), pattern(300<<10)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := metrics.NewSet()
			s := newTestSpool(t, Options{BufferRequests: true, MemoryPerBody: 64 << 10, Metrics: set})
			next, _, calls := recordingNext()
			srv, done := serve(t, s.Requests(next))
			c := rawRequest(t, srv, tt.head)
			if _, err := c.Write(tt.body); err != nil {
				t.Fatal(err)
			}
			c.Close()
			waitDone(t, done, "aborted upload")
			if got := calls.Load(); got != 0 {
				t.Errorf("next called %d times for an aborted upload, want 0", got)
			}
			assertClean(t, s)
			// The body had spilled: a temp file existed and is gone.
			if got := metricValue(t, set, `bulwark_spool_bodies_total{kind="request",where="disk"}`); got != 1 {
				t.Errorf("request bodies on disk = %v, want 1", got)
			}
		})
	}
}

func TestRequests_SpoolFull(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		chunked bool
		want    int
	}{
		{"fits in memory", 8 << 10, false, http.StatusOK},
		{"content-length past disk limit", 64 << 10, false, http.StatusInsufficientStorage},
		{"chunked past disk limit", 64 << 10, true, http.StatusInsufficientStorage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := metrics.NewSet()
			s := newTestSpool(t, Options{BufferRequests: true, MemoryPerBody: 16 << 10, DiskLimit: 1, Metrics: set})
			next, _, calls := recordingNext()
			resp := postPattern(t, s.Requests(next), tt.size, tt.chunked, tt.name)
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusInsufficientStorage {
				if got, want := resp.Header.Get("X-Bulwark-Error"), "spool_full"; got != want {
					t.Errorf("X-Bulwark-Error = %q, want %q", got, want)
				}
				if resp.Header.Get("Retry-After") == "" {
					t.Errorf("no Retry-After on a 507 for a full spool")
				}
				if got := calls.Load(); got != 0 {
					t.Errorf("next called %d times, want 0", got)
				}
				if got := metricValue(t, set, `bulwark_spool_rejected_total{reason="spool_full"}`); got != 1 {
					t.Errorf("rejected spool_full = %v, want 1", got)
				}
			}
			assertClean(t, s)
		})
	}
}

// TestRequests_WriteError covers an unwritable spool dir. Tests run as
// root, where chmod 0500 does not stop writes, so the dir is removed after
// New (file creation fails) or files are opened on /dev/full (writes fail
// with ENOSPC, as on a full disk): 507. A process out of descriptors
// (EMFILE) is not the disk's fault: the same 503 with Retry-After as an
// exhausted file budget.
func TestRequests_WriteError(t *testing.T) {
	tests := []struct {
		name     string
		breakDir func(t *testing.T, s *Spool)
		status   int
		header   string // X-Bulwark-Error
		metric   string // bulwark_spool_rejected_total's reason
		log      string
	}{
		{"dir removed after New", func(t *testing.T, s *Spool) {
			if err := os.Remove(s.Dir()); err != nil {
				t.Fatal(err)
			}
		}, http.StatusInsufficientStorage, "spool_write_error", reasonWriteError, "cannot write request body"},
		{"disk full", func(t *testing.T, s *Spool) {
			s.openTemp = func() (*os.File, error) { return os.OpenFile("/dev/full", os.O_RDWR, 0) }
		}, http.StatusInsufficientStorage, "spool_write_error", reasonWriteError, "cannot write request body"},
		{"out of descriptors", func(t *testing.T, s *Spool) {
			s.openTemp = func() (*os.File, error) {
				return nil, &os.PathError{Op: "open", Path: s.Dir(), Err: syscall.EMFILE}
			}
		}, http.StatusServiceUnavailable, reasonNoFiles, reasonNoFiles, "no descriptor left"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := metrics.NewSet()
			var logs bytes.Buffer
			s := newTestSpool(t, Options{BufferRequests: true, MemoryPerBody: 16 << 10, Metrics: set,
				Logger: newTextLogger(&logs)})
			tt.breakDir(t, s)
			next, _, calls := recordingNext()
			srv, done := serve(t, s.Requests(next))
			resp, err := http.Post(srv.URL, "application/octet-stream", bytes.NewReader(pattern(64<<10)))
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			resp.Body.Close()
			waitDone(t, done, tt.name)
			if resp.StatusCode != tt.status || resp.Header.Get("X-Bulwark-Error") != tt.header {
				t.Errorf("answer = %d %q, want %d %s", resp.StatusCode, resp.Header.Get("X-Bulwark-Error"), tt.status, tt.header)
			}
			if tt.status == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Error("a 503 without Retry-After")
			}
			if got := calls.Load(); got != 0 {
				t.Errorf("next called %d times, want 0", got)
			}
			if got := metricValue(t, set, `bulwark_spool_rejected_total{reason="`+tt.metric+`"}`); got != 1 {
				t.Errorf("rejected %s = %v, want 1", tt.metric, got)
			}
			if !strings.Contains(logs.String(), tt.log) {
				t.Errorf("log = %q, want a line with %q", logs.String(), tt.log)
			}
			if got := s.Stats(); got != (Stats{}) {
				t.Errorf("Stats() = %+v, want zero", got)
			}
		})
	}
}

// TestRequests_SlowUploadBeforeNext checks that next runs only once the
// whole body is in: the client's body is held mid-way, and next must not
// have run while it is; then it is released.
func TestRequests_SlowUploadBeforeNext(t *testing.T) {
	s := newTestSpool(t, Options{BufferRequests: true, MemoryPerBody: 16 << 10})
	next, seenc, calls := recordingNext()
	srv, done := serve(t, s.Requests(next))
	c := rawRequest(t, srv, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	body := pattern(100 << 10)
	half := len(body) / 2
	fmt.Fprintf(c, "%x\r\n%s\r\n", half, body[:half])
	// The server has the first half once the spool holds it.
	eventually(func() bool { st := s.Stats(); return st.DiskBytes+st.MemoryBytes >= int64(half) })
	if got := s.Stats(); got.ActiveBodies != 1 {
		t.Fatalf("Stats() = %+v mid-upload, want one active body", got)
	}
	if got := calls.Load(); got != 0 {
		t.Fatalf("next called %d times before the body was complete, want 0", got)
	}
	fmt.Fprintf(c, "%x\r\n%s\r\n0\r\n\r\n", len(body)-half, body[half:])
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	sn := <-seenc
	waitDone(t, done, "slow upload")
	if resp.StatusCode != http.StatusOK || sn.n != int64(len(body)) || sn.contentLength != int64(len(body)) {
		t.Errorf("status %d, next read %d bytes with ContentLength %d; want 200, %d, %d",
			resp.StatusCode, sn.n, sn.contentLength, len(body), len(body))
	}
	assertClean(t, s)
}

// postPattern serves h, POSTs a size-byte pattern to it (without a length
// when chunked), and returns the answer once the handler has finished.
func postPattern(t *testing.T, h http.Handler, size int, chunked bool, what string) *http.Response {
	t.Helper()
	srv, done := serve(t, h)
	body := pattern(size)
	var r io.Reader = bytes.NewReader(body)
	if chunked {
		r = hideLength(body)
	}
	resp, err := http.Post(srv.URL, "application/octet-stream", r)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	resp.Body.Close()
	waitDone(t, done, what)
	return resp
}
