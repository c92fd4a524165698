package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"

	"bulwark/internal/h1"
)

// maxTrailerBytes bounds the trailer of a chunked answer.
const maxTrailerBytes = 64 << 10

// keepHeadScratch is the largest head buffer a connection keeps between
// requests; a larger one, grown for an unusual head, is dropped.
const keepHeadScratch = 16 << 10

// errHeadTooLarge fails an answer whose head passes maxResponseHeaderBytes.
var errHeadTooLarge = errors.New("the app's response head is too large")

// readResponse waits for the answer to req and reads its head: 100
// Continue is skipped, other 1xx answers go to got1xx (which forwards
// them), and reading goes on to the final answer. It reports whether any
// byte of an answer arrived.
func (pc *upConn) readResponse(req *http.Request, got1xx func(int, textproto.MIMEHeader) error) (*http.Response, bool, error) {
	if _, err := pc.br.Peek(1); err != nil {
		return nil, false, err
	}
	limit := maxResponseHeaderBytes
	for range maxInformational {
		res, n, err := pc.readHead(limit)
		if err != nil {
			return nil, true, err
		}
		res.Request = req
		code := res.StatusCode
		if code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
			pc.gotHead.Store(true)
			return res, true, nil
		}
		limit -= n
		if code != http.StatusContinue && got1xx != nil {
			if err := got1xx(code, textproto.MIMEHeader(res.Header)); err != nil {
				return nil, true, err
			}
			limit = maxResponseHeaderBytes // delivered: the receiver bounds them
		}
	}
	return nil, true, fmt.Errorf("the app sent more than %d informational (1xx) answers", maxInformational)
}

// readHead reads one response head of at most limit bytes and returns it
// parsed, with its size.
func (pc *upConn) readHead(limit int) (*http.Response, int, error) {
	block, err := h1.ReadBlock(pc.br, pc.head, limit)
	pc.head = block
	if errors.Is(err, h1.ErrTooLarge) {
		err = errHeadTooLarge
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(block) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, len(block), err
	}
	res, err := h1.ParseResponseHead(block)
	if cap(pc.head) > keepHeadScratch {
		pc.head = nil
	}
	if err != nil {
		return nil, len(block), fmt.Errorf("malformed answer from the app: %w", err)
	}
	return res, len(block), nil
}

// attachBody gives res its Body, which owns pc from now on. A 101 answer's
// body is the raw connection, which never returns to the pool.
func (pc *upConn) attachBody(res *http.Response, ctx context.Context) error {
	if res.StatusCode == http.StatusSwitchingProtocols {
		if !pc.unwatch() {
			return fmt.Errorf("switching protocols: %w", context.Cause(ctx))
		}
		res.Body = &upgradeBody{br: pc.br, c: pc.c}
		pc.br, pc.bw = nil, nil // they go with the connection
		return nil
	}
	kind, n, err := h1.FrameResponse(res, res.Request.Method)
	if err != nil {
		return fmt.Errorf("malformed answer from the app: %w", err)
	}
	if kind == h1.BodyEmpty {
		res.Body = http.NoBody
		pc.finish(!res.Close)
		return nil
	}
	b := &respBody{pc: pc, res: res, ctx: ctx, kind: kind, left: n}
	if kind == h1.BodyChunked {
		b.chunks = h1.NewChunkedReader(pc.br)
	}
	res.Body = b
	return nil
}

// respBody is an answer's body read straight from the connection's
// buffer. At its end the connection goes back to the pool (when the
// answer allows it), before Close. Read and Close are for one goroutine.
type respBody struct {
	pc     *upConn // nil once the exchange is over
	res    *http.Response
	ctx    context.Context
	kind   h1.BodyKind
	left   int64     // bytes left of a Content-Length body
	chunks io.Reader // decodes a chunked body
	err    error     // returned by every Read once set
}

func (b *respBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	var n int
	var err error
	switch b.kind {
	case h1.BodyLength:
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err = b.pc.br.Read(p)
		b.left -= int64(n)
		if b.left == 0 {
			b.end(true)
			return n, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	case h1.BodyChunked:
		n, err = b.chunks.Read(p)
		if err == io.EOF {
			if terr := b.pc.readTrailer(b.res); terr != nil {
				err = terr
				break
			}
			b.end(true)
			return n, io.EOF
		}
	default:
		n, err = b.pc.br.Read(p)
		if err == io.EOF {
			b.end(false)
			return n, io.EOF
		}
	}
	if err != nil {
		if cerr := b.ctx.Err(); cerr != nil {
			err = cerr
		}
		b.end(false)
		b.err = fmt.Errorf("reading the app's answer body: %w", err)
		return n, b.err
	}
	return n, nil
}

// end ends the exchange: clean, the connection may be pooled.
func (b *respBody) end(clean bool) {
	if b.pc == nil {
		return
	}
	if b.err == nil {
		b.err = io.EOF
	}
	pc := b.pc
	b.pc, b.chunks = nil, nil
	pc.finish(clean && !b.res.Close)
}

// Close ends the body; before its end that closes the connection.
func (b *respBody) Close() error {
	b.end(false)
	b.err = http.ErrBodyReadAfterClose
	return nil
}

// readTrailer reads the trailer after a chunked body's last chunk into
// res.Trailer.
func (pc *upConn) readTrailer(res *http.Response) error {
	h, scratch, err := h1.ReadTrailer(pc.br, pc.head, maxTrailerBytes)
	pc.head = scratch
	if err != nil {
		return fmt.Errorf("the app's answer: %w", err)
	}
	if h == nil {
		return nil
	}
	if res.Trailer == nil {
		res.Trailer = h
		return nil
	}
	for k, vv := range h {
		res.Trailer[k] = vv
	}
	return nil
}

// upgradeBody is the body of a 101 answer: the connection itself, whose
// bytes already buffered are read first. ReverseProxy copies both ways.
type upgradeBody struct {
	br *bufio.Reader // nil once drained
	c  *deadlineConn
}

func (b *upgradeBody) Read(p []byte) (int, error) {
	if b.br != nil {
		if n := b.br.Buffered(); n > 0 {
			if len(p) > n {
				p = p[:n]
			}
			return b.br.Read(p)
		}
		b.br = nil
	}
	return b.c.Read(p)
}

// Write sends p to the app, without the stale check of a new request: the
// app may well have closed its sending side and still read.
func (b *upgradeBody) Write(p []byte) (int, error) { return b.c.write(p) }

func (b *upgradeBody) Close() error { return b.c.Close() }

// CloseWrite half-closes the connection, passing on the client's end of
// its stream.
func (b *upgradeBody) CloseWrite() error {
	if cw, ok := b.c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
