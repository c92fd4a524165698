package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"

	"bulwark/internal/h1"
)

// writeBody sends the request body after the head already in the write
// buffer, on its own goroutine, so the answer can be read meanwhile. It
// publishes the outcome in pc.body and, on a failure before any answer,
// closes the socket so the reader stops waiting. When the answer ended
// first (bodyHandedOff), the connection is its own to pool or close. It
// uses bw, not pc.bw, which the reader may clear on its way out. It always
// closes body.
func (pc *upConn) writeBody(bw *bufio.Writer, body io.ReadCloser, f h1.RequestFraming, trailer http.Header) {
	defer body.Close()
	err := pc.copyBody(bw, body, &f, trailer)
	if err == nil {
		if !pc.body.CompareAndSwap(bodyWriting, bodySent) { // handed off
			pc.body.Store(bodySent)
			pc.u.put(pc)
		}
		return // pc is not touched after bodySent
	}
	pc.bodyErr = err
	if !pc.body.CompareAndSwap(bodyWriting, bodyFailed) { // handed off
		pc.body.Store(bodyFailed)
		pc.close()
		return
	}
	if !pc.gotHead.Load() {
		pc.c.Conn.Close()
	}
}

// copyBody writes body, framed as f says, and flushes after each piece it
// read, so a slow upload reaches the app (and restarts the read clock) as
// it comes.
func (pc *upConn) copyBody(bw *bufio.Writer, body io.Reader, f *h1.RequestFraming, trailer http.Header) error {
	buf := pc.u.copyBufs.Get()
	defer pc.u.copyBufs.Put(buf)
	left := f.Length
	for {
		p := buf
		if !f.Chunked && int64(len(p)) > left {
			p = p[:left]
		}
		n, rerr := body.Read(p)
		if n > 0 {
			if f.Chunked {
				h1.WriteChunk(bw, p[:n])
			} else {
				bw.Write(p[:n])
				left -= int64(n)
			}
			if err := bw.Flush(); err != nil {
				return fmt.Errorf("sending the request body to the app: %w", err)
			}
		}
		if !f.Chunked && left == 0 {
			return nil
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr // the client's failure, or MaxBody: bodyReader says which
		}
	}
	if !f.Chunked {
		return fmt.Errorf("request body ended %d bytes short of its Content-Length %d: %w", left, f.Length, io.ErrUnexpectedEOF)
	}
	h1.WriteLastChunk(bw, trailer)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("sending the request body to the app: %w", err)
	}
	return nil
}
