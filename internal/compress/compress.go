// Package compress compresses the app's answers on the way to the client,
// with zstd or gzip (github.com/klauspost/compress), when the client
// accepts it and the app did not encode the answer itself. It never
// touches answers to HEAD, partial answers, Cache-Control: no-transform,
// types that are compressed already, or answers below a minimum size.
// Streams (SSE, chunked) are flushed whenever the app flushes.
//
// Memory: encoders are pooled and held only while an answer is being
// written, never by an idle connection; at most MaxEncoders full encoders
// exist at once. Past that, and for event streams, which may stay open for
// hours, answers are gzipped statelessly (some 14 KiB of state, a few
// percent larger output). Which types to compress is the caller's choice.
package compress

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"bulwark/internal/negotiate"
)

// Defaults used for zero Options fields.
const (
	// DefaultMaxEncoders bounds the full (pooled) encoders in use at once:
	// about 1 MiB each for gzip, 0.7 MiB for zstd.
	DefaultMaxEncoders = 16
	// GzipLevel is the gzip level: klauspost's level 5 compresses about as
	// well as zlib's 6 (nginx gzip_comp_level 6) for less CPU.
	GzipLevel = 5
	// zstdWindow is the zstd window: a small one keeps the encoder near
	// 0.7 MiB; web answers gain little from a larger one.
	zstdWindow = 64 << 10
)

// Options say what to compress. The zero value compresses nothing.
type Options struct {
	// Types are the media types compressed: "text/html" or "text/*".
	// Empty turns compression off. Types that are compressed already
	// (images other than SVG, audio, video, fonts in WOFF, archives) are
	// never compressed, even when listed.
	Types []string
	// MinSize is the smallest answer compressed: one with a smaller
	// Content-Length, or of unknown length that ends before this many
	// bytes without a flush, is sent as it is. Zero compresses any size.
	MinSize int
	// MaxEncoders bounds the full encoders in use at once; zero means
	// DefaultMaxEncoders. Answers past it are gzipped statelessly.
	MaxEncoders int
}

// Compressor is the middleware factory; Update replaces its options.
type Compressor struct {
	opts  atomic.Pointer[compiled]
	slots chan struct{} // one per full encoder in use; sized at New

	zstdPool, gzipPool, statelessPool sync.Pool // encoder
}

// encoder is what zstd.Encoder and gzip.Writer have in common.
type encoder interface {
	io.WriteCloser
	Flush() error
	Reset(io.Writer)
}

var (
	_ encoder = (*zstd.Encoder)(nil)
	_ encoder = (*gzip.Writer)(nil)
)

type compiled struct {
	exact    map[string]bool
	prefixes []string // "text/" for "text/*"
	minSize  int
}

// New returns a Compressor with options o.
func New(o Options) *Compressor {
	n := o.MaxEncoders
	if n <= 0 {
		n = DefaultMaxEncoders
	}
	c := &Compressor{slots: make(chan struct{}, n)}
	c.zstdPool.New = func() any {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
			zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(zstdWindow))
		if err != nil {
			panic("compress: zstd options rejected: " + err.Error()) // constant options
		}
		return e
	}
	c.gzipPool.New = func() any {
		w, _ := gzip.NewWriterLevel(nil, GzipLevel) // a valid constant level
		return w
	}
	c.statelessPool.New = func() any {
		w, _ := gzip.NewWriterLevel(nil, gzip.StatelessCompression)
		return w
	}
	c.Update(o)
	return c
}

// Update replaces Types and MinSize for answers that start from now on.
func (c *Compressor) Update(o Options) {
	p := &compiled{exact: map[string]bool{}, minSize: max(o.MinSize, 0)}
	for _, t := range o.Types {
		t = strings.ToLower(strings.TrimSpace(t))
		if prefix, ok := strings.CutSuffix(t, "/*"); ok {
			p.prefixes = append(p.prefixes, prefix+"/")
		} else if t != "" {
			p.exact[t] = true
		}
	}
	c.opts.Store(p)
}

// Middleware compresses next's answers as the package doc says, adding
// Vary: Accept-Encoding to every answer whose type is compressed (for
// this client or not) and weakening a strong ETag of a compressed one
// (RFC 9110, 8.8.1: the bytes differ from the identity answer's).
func (c *Compressor) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := c.opts.Load()
		if r.Method == http.MethodHead || (len(p.exact) == 0 && len(p.prefixes) == 0) {
			next.ServeHTTP(w, r)
			return
		}
		cw := &writer{ResponseWriter: w, c: c, p: p}
		cw.coding, cw.gzipOK = pickCoding(r.Header.Get("Accept-Encoding"))
		defer cw.release() // also when next panics (http.ErrAbortHandler)
		next.ServeHTTP(cw, r)
		cw.finish()
	})
}

// compressible reports whether an answer with this Content-Type may be
// compressed.
func (p *compiled) compressible(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if mt == "" || precompressedType(mt) {
		return false
	}
	if p.exact[mt] {
		return true
	}
	for _, prefix := range p.prefixes {
		if strings.HasPrefix(mt, prefix) {
			return true
		}
	}
	return false
}

// precompressedType reports whether media type mt is compressed already,
// so that compressing it again costs CPU for nothing.
func precompressedType(mt string) bool {
	switch {
	case mt == "image/svg+xml", mt == "image/bmp", mt == "image/x-icon", mt == "image/vnd.microsoft.icon":
		return false
	case strings.HasPrefix(mt, "image/"), strings.HasPrefix(mt, "video/"), strings.HasPrefix(mt, "audio/"):
		return true
	}
	switch mt {
	case "font/woff", "font/woff2", "application/zip", "application/gzip", "application/x-gzip",
		"application/zstd", "application/x-bzip2", "application/x-xz", "application/x-7z-compressed",
		"application/x-rar-compressed", "application/vnd.rar", "application/pdf", "application/wasm+gzip",
		"application/octet-stream":
		return true
	}
	return false
}

// codings are the ones compress offers, zstd first: it wins a tie.
var codings = []string{"zstd", "gzip"}

// pickCoding returns the coding to use for a client's Accept-Encoding:
// zstd or gzip, by the client's weights, zstd on a tie; "" for neither.
// gzipOK reports whether the client takes gzip at all.
func pickCoding(accept string) (coding string, gzipOK bool) {
	if accept == "" {
		return "", false
	}
	var q [2]float64
	negotiate.EncodingQs(accept, codings, q[:])
	z, g := q[0], q[1]
	switch {
	case z <= 0 && g <= 0:
		return "", false
	case z >= g:
		return "zstd", g > 0
	default:
		return "gzip", true
	}
}
