package spool

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"

	"bulwark/internal/httperr"
	"bulwark/internal/limit"
)

// Requests returns a handler that, with BufferRequests, reads each request
// body to its end into a Buffer before calling next, and hands next a
// request whose Body reads from the spool with an exact ContentLength, no
// Transfer-Encoding, no Expect and a GetBody that replays it. Requests
// without a body pass straight through. A body past MaxBody is answered 413
// (before reading when its Content-Length says so); a body that would pass
// the disk cap, or that cannot be written, 507; a body that must spill but
// finds no temp file free within FileWait, 503; a body from an address
// that has BodiesPerIP bodies arriving already, 429 before it is read; a
// client that gives up mid-upload never reaches next. The spool is freed
// when next returns.
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
			s.reject(w, r, httperr.BodyTooLarge(limit))
			return
		}
		ru := s.rules(r)
		if !ru.BufferRequests {
			if limit > 0 {
				r2 := new(http.Request)
				*r2 = *r
				r2.Body = &limitedBody{rc: r.Body, left: limit, limit: limit, s: s}
				r = r2
			}
			next.ServeHTTP(w, r)
			return
		}
		s.spoolRequest(w, r, next, ru.MemoryPerBody)
	})
}

// spoolRequest reads r's body into a Buffer that holds up to share bytes
// in memory, then calls next.
func (s *Spool) spoolRequest(w http.ResponseWriter, r *http.Request, next http.Handler, share int64) {
	if cl := r.ContentLength; cl > 0 {
		// A declared body whose spill cannot fit is refused before reading.
		spill := cl - min(share, s.memRoom())
		if spill > 0 && !s.diskRoom(spill) {
			s.reject(w, r, s.spoolFull(fmt.Errorf("body of %d bytes: %w", cl, ErrSpoolFull)))
			return
		}
	}
	addr := s.clientKey(r)
	if !s.addrs.Acquire(addr, s.o().BodiesPerIP) {
		s.reject(w, r, s.refuse(reasonPerIP, &httperr.Error{
			Status:     http.StatusTooManyRequests,
			Reason:     reasonPerIP,
			Msg:        "too many request bodies arriving from your address at once, try again shortly",
			RetryAfter: BodiesPerIPRetryAfter,
		}))
		return
	}
	b := s.newBuffer(kindRequest, share)
	defer b.Close()
	b.fileWait, b.waitDone = s.o().FileWait, r.Context().Done()
	err := s.fillReleasing(b, r.Body, addr)
	if err != nil {
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

// fillReleasing fills b and then releases addr's bodies_per_ip slot: the
// body has arrived (or failed), so it counts no more. Deferred, so a
// panic in the body's reader cannot leak the slot.
func (s *Spool) fillReleasing(b *Buffer, body io.Reader, addr netip.Addr) *httperr.Error {
	defer s.addrs.Release(addr)
	return s.fill(b, body)
}

// fill reads body to its end into b, enforcing MaxBody; the error is an
// answer to send (nil when the whole body is in b). While the body may
// stay in memory it is read straight into b's segments, so a body waiting
// for its next byte holds no read buffer; once it spills, reads go through
// a scratch buffer that is small while the client trickles and a chunk
// while it streams.
func (s *Spool) fill(b *Buffer, body io.Reader) *httperr.Error {
	limit := s.o().MaxBody
	var sc scratch
	defer sc.free(s)
	var total int64
	for {
		buf := b.space()
		inPlace := buf != nil
		if !inPlace {
			buf = sc.get(s)
		}
		n, rerr := body.Read(buf)
		if n > 0 {
			total += int64(n)
			if limit > 0 && total > limit {
				return httperr.BodyTooLarge(limit)
			}
			var werr error
			if inPlace {
				werr = b.commit(n)
			} else {
				sc.used(n)
				_, werr = b.Write(buf[:n])
			}
			if werr != nil {
				return s.writeFailed(werr)
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

// writeFailed maps a failure to store a request body to the answer: 507
// for a full spool, 503 for an exhausted file budget or a process out of
// descriptors (the disk is fine; a retry may get a file), else 507 with a
// log line.
func (s *Spool) writeFailed(err error) *httperr.Error {
	switch {
	case errors.Is(err, ErrSpoolFull):
		return s.spoolFull(err)
	case errors.Is(err, ErrNoFiles), limit.OutOfDescriptors(err):
		s.warn(logNoFiles, "spool: no temp file to be had (budget used up, or no descriptor left); answering 503",
			"dir", s.o().Dir, "max_files", s.o().MaxFiles, "waited", s.o().FileWait, "err", err)
		return s.refuse(reasonNoFiles, &httperr.Error{
			Status:     http.StatusServiceUnavailable,
			Reason:     reasonNoFiles,
			Msg:        "the server is receiving too many uploads at once, try again shortly",
			RetryAfter: NoFilesRetryAfter,
			Err:        err,
		})
	}
	s.rejected[reasonWriteError].Inc()
	s.warn(logRequestWrite, "spool: cannot write request body; answering 507", "dir", s.o().Dir, "err", err)
	return &httperr.Error{
		Status: http.StatusInsufficientStorage,
		Reason: "spool_write_error",
		Msg:    "the request body could not be stored",
		Err:    err,
	}
}

// refuse counts a refusal that keeps one client from exhausting the box,
// in bulwark_spool_rejected_total and bulwark_rejected_total, and returns
// e.
func (s *Spool) refuse(reason string, e *httperr.Error) *httperr.Error {
	s.rejected[reason].Inc()
	s.refused[reason].Inc()
	return e
}

// scratch is fill's read buffer for a body past memory: a small segment
// after a read that did not fill it (the client sends slowly, so a wait
// costs 2 KiB, not a chunk), a pooled chunk while reads bring more than
// the small segment holds. A TLS read returns at most one 16 KiB record,
// never a whole chunk, so "more than small" is the test, not "filled".
type scratch struct {
	small, big []byte
	full       bool // the last read brought at least a small segment's worth
}

func (sc *scratch) get(s *Spool) []byte {
	if sc.full {
		if sc.big == nil {
			sc.big = s.getChunk()[:]
		}
		return sc.big
	}
	if sc.big != nil { // trickling again: give the chunk back while waiting
		s.putSeg(sc.big)
		sc.big = nil
	}
	if sc.small == nil {
		sc.small = s.getSeg(4 * segMin)
	}
	return sc.small
}

// used records that a read returned n bytes into the last buffer get gave.
func (sc *scratch) used(n int) {
	sc.full = n >= len(sc.small)
}

func (sc *scratch) free(s *Spool) {
	if sc.small != nil {
		s.putSeg(sc.small)
	}
	if sc.big != nil {
		s.putSeg(sc.big)
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
		return httperr.BodyTooLarge(mbe.Limit)
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
		l.err = httperr.BodyTooLarge(l.limit)
		return n, l.err
	}
	l.left -= int64(n)
	return n, err
}

func (l *limitedBody) Close() error { return l.rc.Close() }
