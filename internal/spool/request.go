package spool

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	"bulwark/internal/httperr"
)

// errBodyTooLarge is the answer for a body past Options.MaxBody.
func errBodyTooLarge(limit int64) *httperr.Error {
	return &httperr.Error{
		Status: http.StatusRequestEntityTooLarge,
		Reason: reasonTooLarge,
		Msg:    "request body larger than " + strconv.FormatInt(limit, 10) + " bytes",
	}
}

// Requests returns a handler that, with BufferRequests, reads each request
// body to its end into a Buffer before calling next, and hands next a
// request whose Body reads from the spool with an exact ContentLength, no
// Transfer-Encoding, no Expect and a GetBody that replays it. Requests
// without a body pass straight through. A body past MaxBody is answered 413
// (before reading when its Content-Length says so); a body that would pass
// the disk cap, or that cannot be written, 507; a client that gives up
// mid-upload never reaches next. The spool is freed when next returns.
//
// Without BufferRequests the body passes through, but MaxBody is still
// enforced: the body's reader fails with an *httperr.Error (413) once the
// count passes it, which the proxy answers as such.
func (s *Spool) Requests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		limit := s.o().MaxBody
		if limit > 0 && r.ContentLength > limit {
			s.reject(w, r, errBodyTooLarge(limit))
			return
		}
		if !s.o().BufferRequests {
			if limit > 0 {
				r2 := new(http.Request)
				*r2 = *r
				r2.Body = &limitedBody{rc: r.Body, left: limit, limit: limit, s: s}
				r = r2
			}
			next.ServeHTTP(w, r)
			return
		}
		s.spoolRequest(w, r, next)
	})
}

func (s *Spool) spoolRequest(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if cl := r.ContentLength; cl > 0 {
		// A declared body whose spill cannot fit is refused before reading.
		spill := cl - min(s.o().MemoryPerBody, s.memRoom())
		if spill > 0 && !s.diskRoom(spill) {
			s.reject(w, r, s.spoolFull(fmt.Errorf("body of %d bytes: %w", cl, ErrSpoolFull)))
			return
		}
	}
	b := s.newBuffer(kindRequest)
	defer b.Close()
	if err := s.fill(b, r.Body); err != nil {
		b.Close() // free the spool before answering
		s.reject(w, r, err)
		return
	}
	size := b.Size()
	r2 := new(http.Request)
	*r2 = *r
	r2.Header = r.Header.Clone()
	r2.Header.Set("Content-Length", strconv.FormatInt(size, 10))
	r2.Header.Del("Transfer-Encoding")
	r2.Header.Del("Expect") // the body is here already
	r2.TransferEncoding = nil
	r2.Trailer = nil // sent with Content-Length, there is no room for trailers
	r2.ContentLength = size
	if size == 0 {
		r2.Body = http.NoBody
		r2.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
	} else {
		r2.Body = b.Reader()
		r2.GetBody = func() (io.ReadCloser, error) { return b.Reader(), nil }
	}
	next.ServeHTTP(w, r2)
}

// fill reads body to its end into b, enforcing MaxBody; the error is an
// answer to send (nil when the whole body is in b).
func (s *Spool) fill(b *Buffer, body io.Reader) *httperr.Error {
	limit := s.o().MaxBody
	bufp := s.getChunk()
	defer s.putChunk(bufp)
	buf := bufp[:]
	var total int64
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			total += int64(n)
			if limit > 0 && total > limit {
				return errBodyTooLarge(limit)
			}
			if _, werr := b.Write(buf[:n]); werr != nil {
				if errors.Is(werr, ErrSpoolFull) {
					return s.spoolFull(werr)
				}
				s.rejected[reasonWriteError].Inc()
				s.warn(logRequestWrite, "spool: cannot write request body; answering 507", "dir", s.o().Dir, "err", werr)
				return &httperr.Error{
					Status: http.StatusInsufficientStorage,
					Reason: "spool_write_error",
					Msg:    "the request body could not be stored",
					Err:    werr,
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return bodyReadError(rerr)
		}
	}
}

// spoolFull counts and logs a full spool and returns the 507 to answer.
func (s *Spool) spoolFull(err error) *httperr.Error {
	s.rejected[reasonSpoolFull].Inc()
	s.warn(logSpoolFull, "spool: disk limit reached; answering 507", "dir", s.o().Dir,
		"disk_bytes", s.disk.Load(), "disk_limit", s.o().DiskLimit)
	return &httperr.Error{
		Status:     http.StatusInsufficientStorage,
		Reason:     reasonSpoolFull,
		Msg:        "the server's request spool is full, try again shortly",
		RetryAfter: SpoolFullRetryAfter,
		Err:        err,
	}
}

// bodyReadError maps a failure reading the client's body to an answer: the
// client is usually gone, so the answer mostly serves the access log.
func bodyReadError(err error) *httperr.Error {
	var mbe *http.MaxBytesError
	var he *httperr.Error
	var ne net.Error
	switch {
	case errors.As(err, &he):
		return he
	case errors.As(err, &mbe):
		return errBodyTooLarge(mbe.Limit)
	case errors.As(err, &ne) && ne.Timeout():
		return &httperr.Error{Status: http.StatusRequestTimeout, Reason: "body_timeout",
			Msg: "the request body arrived too slowly", Err: err}
	default:
		return &httperr.Error{Status: http.StatusBadRequest, Reason: "body_incomplete",
			Msg: "the request body was cut short", Err: err}
	}
}

// reject answers err, counting 413s.
func (s *Spool) reject(w http.ResponseWriter, r *http.Request, err *httperr.Error) {
	if err.Reason == reasonTooLarge {
		s.rejected[reasonTooLarge].Inc()
	}
	httperr.Write(w, r, err)
}

// limitedBody passes a body through and fails once more than limit bytes
// were read.
type limitedBody struct {
	rc    io.ReadCloser
	left  int64
	limit int64
	s     *Spool
	err   error
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.rc.Read(p)
	if int64(n) > l.left {
		n = int(l.left)
		l.s.rejected[reasonTooLarge].Inc()
		l.err = errBodyTooLarge(l.limit)
		return n, l.err
	}
	l.left -= int64(n)
	return n, err
}

func (l *limitedBody) Close() error { return l.rc.Close() }
