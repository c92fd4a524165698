// Package static serves files from directories under URL prefixes, without
// the app: conditional and partial requests (through http.ServeContent),
// Content-Type by extension, precompressed .br/.zst/.gz siblings, and
// Cache-Control from the configured age. It refuses directory listings,
// dotfiles, and any name that would leave the directory — "..", encoded
// separators, and symlinks pointing outside (the directory is an os.Root).
// Choosing the prefixes and directories is left to the caller.
package static

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"bulwark/internal/clientip"
	"bulwark/internal/httperr"
	"bulwark/internal/limit"
)

// DefaultMaxOpen is the most files open for transfers at once when
// Options.MaxOpen is zero; fewer when RLIMIT_NOFILE is small (an eighth of it).
const DefaultMaxOpen = 1024

// DefaultOpenWait is how long a request waits for a file slot when
// Options.OpenWait is zero; then 503.
const DefaultOpenWait = 5 * time.Second

// bufSize is the size of the pooled copy buffers: one per transfer in
// flight, whatever the file's size.
const bufSize = 32 << 10

// Mount is one directory served under a URL prefix.
type Mount struct {
	// Path is the URL prefix, starting and ending with "/".
	Path string
	// Dir is the directory served under Path.
	Dir string
	// Cache is the Cache-Control max-age; zero sends "no-cache" (the
	// browser revalidates, and gets a 304 while the file is unchanged).
	// Names that carry a content hash (app.3f2a9c1b.js) also get
	// "immutable".
	Cache time.Duration
}

// Options configure a Server.
type Options struct {
	// Mounts are the directories served; none serves nothing.
	Mounts []Mount
	// MaxOpen bounds the files open for transfers at once, part of the
	// process's file-descriptor budget; zero means an eighth of
	// RLIMIT_NOFILE, between 16 and DefaultMaxOpen.
	MaxOpen int
	// OpenWait is how long a request waits for a file slot before a 503;
	// zero means DefaultOpenWait.
	OpenWait time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For names the client,
	// for the per-client share of the file slots.
	TrustedProxies []netip.Prefix
}

func (o Options) withDefaults() Options {
	if o.MaxOpen <= 0 {
		o.MaxOpen = DefaultMaxOpenFiles()
	}
	if o.OpenWait <= 0 {
		o.OpenWait = DefaultOpenWait
	}
	return o
}

// Server serves the mounts; Update replaces them while it serves.
type Server struct {
	cur   atomic.Pointer[mounts]
	slots chan struct{} // one per open file; sized at New
	wait  time.Duration
	// perClient caps the slots one client holds (an eighth, at least 16),
	// so a client that reads slowly on many streams cannot hold them all.
	perClient int
	clients   clientip.Counts
	bufs      sync.Pool // *[bufSize]byte
}

// mounts is one generation of mounts, longest prefix first, with the
// proxies trusted to name the client.
type mounts struct {
	list    []*mount
	trusted []netip.Prefix
}

type mount struct {
	Mount
	root *os.Root
}

// New opens every mount's directory and returns a Server, or an error
// naming each directory that cannot be served.
func New(o Options) (*Server, error) {
	o = o.withDefaults()
	s := &Server{slots: make(chan struct{}, o.MaxOpen), wait: o.OpenWait, perClient: max(o.MaxOpen/8, 16)}
	s.bufs.New = func() any { return new([bufSize]byte) }
	if err := s.Update(o); err != nil {
		return nil, err
	}
	return s, nil
}

// Update opens the directories of o's mounts and, when all opened, serves
// them from now on; on error the old mounts stay. The old directories are
// closed once the transfers that use them end (os.Root's cleanup), not at
// once, so that no transfer is cut. MaxOpen and OpenWait apply from New only.
func (s *Server) Update(o Options) error {
	var errs []error
	next := &mounts{trusted: o.TrustedProxies}
	for _, m := range o.Mounts {
		root, err := os.OpenRoot(m.Dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("serving %s: %w", m.Path, err))
			continue
		}
		next.list = append(next.list, &mount{Mount: m, root: root})
	}
	if len(errs) > 0 {
		for _, m := range next.list {
			m.root.Close()
		}
		return errors.Join(errs...)
	}
	slices.SortStableFunc(next.list, func(a, b *mount) int { return len(b.Path) - len(a.Path) })
	s.cur.Store(next)
	return nil
}

// Close closes the directories of the current mounts.
func (s *Server) Close() error {
	var errs []error
	for _, m := range s.cur.Load().list {
		errs = append(errs, m.root.Close())
	}
	return errors.Join(errs...)
}

// Middleware serves requests under a mount's prefix (the longest that
// matches) and passes every other request to next. Under a prefix, the
// answer is always Bulwark's: 404 for a name that is missing or refused.
func (s *Server) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ms := s.cur.Load()
		for _, m := range ms.list {
			if strings.HasPrefix(r.URL.Path, m.Path) {
				s.serve(w, r, ms, m)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

var (
	errNotFound = httperr.New(http.StatusNotFound, "static_not_found", "no such file")
	errNoSlot   = &httperr.Error{Status: http.StatusServiceUnavailable, Reason: "static_files",
		Msg: "too many files open, try again shortly", RetryAfter: time.Second}
)

// openFailure is the answer to a file that could not be opened: 503 when
// the process is out of descriptors (the file is there; a retry may get
// it), else 404, whatever the reason, so a refused name looks like a
// missing one.
func openFailure(err error) *httperr.Error {
	if limit.OutOfDescriptors(err) {
		return errNoSlot
	}
	return errNotFound
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, ms *mounts, m *mount) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// Not httperr.Write: a 405 must carry Allow, which it would drop.
		h := w.Header()
		h.Set("Allow", "GET, HEAD")
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Bulwark-Error", "static_method")
		w.WriteHeader(http.StatusMethodNotAllowed)
		_, _ = io.WriteString(w, "405 static files answer GET and HEAD only (bulwark)\n")
		return
	}
	name, ok := cleanName(r.URL.Path[len(m.Path):], r.URL.RawPath)
	if !ok {
		httperr.Write(w, r, errNotFound)
		return
	}
	client := clientip.Key(clientip.Of(r.RemoteAddr, r.Header["X-Forwarded-For"], ms.trusted))
	if !s.clients.Acquire(client, s.perClient) {
		httperr.Write(w, r, &httperr.Error{Status: http.StatusTooManyRequests, Reason: "static_per_ip",
			Msg: "too many files being sent to your address at once, try again shortly", RetryAfter: time.Second})
		return
	}
	defer s.clients.Release(client)
	if !s.acquire(r) {
		httperr.Write(w, r, errNoSlot)
		return
	}
	defer s.release()
	f, fi, err := openRegular(m.root, name)
	if err != nil {
		httperr.Write(w, r, openFailure(err))
		return
	}
	defer f.Close()

	h := w.Header()
	ctype := contentType(name)
	if v, vf, vfi, ok := precompressed(m.root, name, r.Header.Get("Accept-Encoding")); ok {
		f.Close()
		f, fi = vf, vfi
		h.Set("Content-Encoding", v.coding)
		if ctype == "" {
			ctype = "application/octet-stream" // never sniff compressed bytes
		}
		h.Set("ETag", etag(fi, v.coding))
	} else {
		h.Set("ETag", etag(fi, ""))
	}
	if ctype != "" {
		h.Set("Content-Type", ctype)
	}
	h.Add("Vary", "Accept-Encoding")
	h.Set("Cache-Control", cacheControl(m.Cache, name))
	http.ServeContent(&pooledWriter{ResponseWriter: w, s: s}, r, name, fi.ModTime(), &sizedFile{f: f, size: fi.Size()})
}

// acquire takes a file slot, waiting up to s.wait; it reports false when
// none was free in time or the client left.
func (s *Server) acquire(r *http.Request) bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(s.wait)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return true
	case <-t.C:
	case <-r.Context().Done():
	}
	return false
}

func (s *Server) release() { <-s.slots }

// cleanName turns the part of the URL path after the prefix into a name
// inside the directory, or reports false for a name that is refused: empty
// (a directory), an empty, dot or dot-dot segment, a dotfile, a backslash
// or NUL, or a separator that came percent-encoded.
func cleanName(rel, rawPath string) (string, bool) {
	if rel == "" || strings.ContainsAny(rel, "\\\x00") {
		return "", false
	}
	if lower := strings.ToLower(rawPath); strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") {
		return "", false
	}
	for seg := range strings.SplitSeq(rel, "/") {
		if seg == "" || seg[0] == '.' {
			return "", false
		}
	}
	return rel, true
}

// openRegular opens name in root when it is a regular file (a symlink that
// stays inside root is followed; one that leaves it fails).
func openRegular(root *os.Root, name string) (*os.File, fs.FileInfo, error) {
	f, err := root.OpenFile(name, openFlags, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fs.ErrNotExist
	}
	return f, fi, nil
}

// etag is a strong validator from the file's modification time and size,
// and the coding of a precompressed variant (each is its own representation).
func etag(fi fs.FileInfo, coding string) string {
	t := `"` + strconv.FormatInt(fi.ModTime().UnixNano(), 36) + "-" + strconv.FormatInt(fi.Size(), 36)
	if coding != "" {
		t += "-" + coding
	}
	return t + `"`
}

// cacheControl is the Cache-Control of a file served with max-age age.
func cacheControl(age time.Duration, name string) string {
	if age <= 0 {
		return "no-cache"
	}
	v := "public, max-age=" + strconv.FormatInt(int64(age/time.Second), 10)
	if hashed(name) {
		v += ", immutable"
	}
	return v
}

// sizedFile is an open file whose size is known from its stat. Seek only
// moves an offset and Read reads at it with pread(2): the two seeks
// http.ServeContent makes to learn the size, and the one back after
// sniffing, cost no system call, and a read never asks past the end.
type sizedFile struct {
	f         *os.File
	size, off int64
}

func (sf *sizedFile) Read(p []byte) (int, error) {
	if sf.off >= sf.size {
		return 0, io.EOF
	}
	if left := sf.size - sf.off; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := sf.f.ReadAt(p, sf.off)
	sf.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil // a file cut short meanwhile: EOF on the next Read
	}
	return n, err
}

func (sf *sizedFile) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += sf.off
	case io.SeekEnd:
		offset += sf.size
	default:
		return 0, errors.New("static: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("static: seek before the start")
	}
	sf.off = offset
	return offset, nil
}

// pooledWriter gives http.ServeContent a ReadFrom that copies through a
// pooled buffer, so a transfer holds one buffer whatever its size.
type pooledWriter struct {
	http.ResponseWriter
	s *Server
}

func (pw *pooledWriter) ReadFrom(src io.Reader) (int64, error) {
	buf := pw.s.bufs.Get().(*[bufSize]byte)
	defer pw.s.bufs.Put(buf)
	// Hide ReadFrom from io.CopyBuffer, which would call it again.
	return io.CopyBuffer(struct{ io.Writer }{pw.ResponseWriter}, src, buf[:])
}

// Unwrap serves http.ResponseController.
func (pw *pooledWriter) Unwrap() http.ResponseWriter { return pw.ResponseWriter }

// ServeContent needs only Write and ReadFrom; Unwrap reaches the rest.
var _ io.ReaderFrom = (*pooledWriter)(nil)
