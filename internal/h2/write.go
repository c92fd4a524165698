package h2

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"
)

// encodeBuffer collects the HPACK encoder's output.
type encodeBuffer struct{ b []byte }

func (e *encodeBuffer) Write(p []byte) (int, error) { e.b = append(e.b, p...); return len(p), nil }

// write builds frames with build and writes them in one Write, under
// deadline (zero: WriteTimeout from now). After a failed write the
// connection is dead: it is closed, and every later write fails.
func (c *h2Conn) write(deadline time.Time, build func(b []byte) []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(deadline, build)
}

// writeStream is write for the frames of stream st. It writes nothing, and
// returns errStreamReset, once the stream is over: after a RST_STREAM, in
// either direction, no HEADERS or DATA may follow on it (RFC 9113 5.1).
// The check is under wmu, so a reset racing with this write either comes
// first, and the write is dropped, or is written after it.
func (c *h2Conn) writeStream(st *h2Stream, deadline time.Time, build func(b []byte) []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if st.over.Load() {
		return errStreamReset
	}
	return c.writeLocked(deadline, build)
}

func (c *h2Conn) writeLocked(deadline time.Time, build func(b []byte) []byte) error {
	if c.werr != nil {
		return c.werr
	}
	bp := h2WritePool.Get().(*[]byte)
	b := build((*bp)[:0])
	if deadline.IsZero() {
		deadline = time.Now().Add(c.srv.o().WriteTimeout)
	}
	c.rwc.SetWriteDeadline(deadline)
	_, err := c.rwc.Write(b)
	if cap(b) <= 4*h2FrameSize {
		*bp = b[:0]
		h2WritePool.Put(bp)
	}
	if err != nil {
		c.werr = fmt.Errorf("write http2 frames: %w", err)
		c.rwc.Close() // the reader sees it and ends the streams
		return c.werr
	}
	return nil
}

func appendFrameHeader(b []byte, length int, typ, flags byte, id uint32) []byte {
	b = append(b, byte(length>>16), byte(length>>8), byte(length), typ, flags)
	return binary.BigEndian.AppendUint32(b, id)
}

func appendSetting(b []byte, id uint16, val uint32) []byte {
	b = binary.BigEndian.AppendUint16(b, id)
	return binary.BigEndian.AppendUint32(b, val)
}

func appendWindowUpdate(b []byte, id, inc uint32) []byte {
	b = appendFrameHeader(b, 4, frameWindowUpdate, 0, id)
	return binary.BigEndian.AppendUint32(b, inc)
}

func appendRSTStream(b []byte, id, code uint32) []byte {
	b = appendFrameHeader(b, 4, frameRSTStream, 0, id)
	return binary.BigEndian.AppendUint32(b, code)
}

// statusString renders an HTTP status code for :status without allocating
// for the common ones.
func statusString(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 206:
		return "206"
	case 301:
		return "301"
	case 302:
		return "302"
	case 304:
		return "304"
	case 400:
		return "400"
	case 404:
		return "404"
	case 500:
		return "500"
	case 502:
		return "502"
	case 503:
		return "503"
	}
	return strconv.Itoa(code)
}
