package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
)

// This file is the chunked transfer coding (RFC 9112 7.1): the decoder,
// the two readers of the trailer section after it (7.1.2), and the
// encoder.

// NewChunkedReader returns a reader that decodes the chunked body read
// from r, up to and including the last chunk's size line; the trailer
// section after it is left in r, for SkipTrailer or ReadTrailer.
//
// It is net/http's own decoder (httputil.NewChunkedReader, the code behind
// http.ReadRequest and http.ReadResponse), so chunk sizes, extensions and
// line ends are read exactly as net/http reads them, and its fixes reach
// Bulwark with the Go release: a bare LF or CR in a chunk line is refused
// (CVE-2025-22871, Go 1.24.2), and extensions that outweigh the data fail
// the body (CVE-2023-39326).
func NewChunkedReader(r io.Reader) io.Reader { return httputil.NewChunkedReader(r) }

// SkipTrailer reads and discards the trailer section after a chunked
// body's last chunk, up to its empty line, at most max bytes. A server
// that forwards no request trailers needs only this. Every line must end
// in CRLF: a bare LF read differently by another hop would let the bytes
// after it be a request to one and trailer to the other (golang/go#81143;
// net/http reads it).
func SkipTrailer(br *bufio.Reader, max int) error {
	total := 0
	lineLen := 0    // bytes of the current line read so far
	lastCR := false // the byte before the next fragment is CR
	for {
		frag, err := br.ReadSlice('\n')
		total += len(frag)
		if total > max {
			return errors.New("trailer too large")
		}
		if err == bufio.ErrBufferFull {
			lineLen += len(frag)
			lastCR = frag[len(frag)-1] == '\r'
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		crlf := len(frag) >= 2 && frag[len(frag)-2] == '\r' || len(frag) == 1 && lastCR
		if !crlf {
			return errors.New("trailer line not ended by CRLF")
		}
		if lineLen+len(frag) == 2 {
			return nil
		}
		lineLen, lastCR = 0, false
	}
}

// ReadTrailer reads the trailer section after a chunked body's last chunk,
// at most max bytes, into a header (nil when it is empty). scratch is a
// buffer to read into, returned, perhaps grown, for reuse. The fields are
// checked as a head's are (CheckFields), and every line must end in CRLF,
// unlike a head's: with the next message following on the same
// connection, a bare LF read differently by another hop would move where
// that message starts (golang/go#81143).
func ReadTrailer(br *bufio.Reader, scratch []byte, max int) (http.Header, []byte, error) {
	if p, err := br.Peek(2); err == nil && p[0] == '\r' && p[1] == '\n' {
		br.Discard(2)
		return nil, scratch, nil
	}
	block, err := ReadBlock(br, scratch, max)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, block, fmt.Errorf("reading the trailer: %w", err)
	}
	for i, c := range block {
		if c == '\n' && (i == 0 || block[i-1] != '\r') {
			return nil, block, errors.New("malformed trailer: a line not ended by CRLF")
		}
	}
	n, err := CheckFields(block, false)
	if err != nil {
		return nil, block, fmt.Errorf("malformed trailer: %w", err)
	}
	if n == 0 {
		return nil, block, nil
	}
	h := make(http.Header, n)
	fillHeader(h, string(block), n)
	return h, block, nil
}

// WriteChunk writes p as one chunk; an empty p writes nothing, since a
// zero-size chunk is the last. The error is bw's.
func WriteChunk(bw *bufio.Writer, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	bw.Write(strconv.AppendUint(bw.AvailableBuffer(), uint64(len(p)), 16))
	bw.WriteString("\r\n")
	bw.Write(p)
	_, err := bw.WriteString("\r\n")
	return err
}

// WriteLastChunk writes the last chunk and the trailer section: the fields
// of trailer with a valid name, written as WriteField writes them. The
// error is bw's.
func WriteLastChunk(bw *bufio.Writer, trailer http.Header) error {
	bw.WriteString("0\r\n")
	for k, vv := range trailer {
		if !ValidFieldName(k) {
			continue
		}
		for _, v := range vv {
			WriteField(bw, k, v)
		}
	}
	_, err := bw.WriteString("\r\n")
	return err
}
