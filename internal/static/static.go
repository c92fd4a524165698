// Package static serves files from directories under URL prefixes, without
// the app: conditional and partial requests (through http.ServeContent),
// Content-Type by extension (never sniffed), precompressed .br/.zst/.gz
// siblings, and Cache-Control from the configured age. It refuses directory
// listings, dotfiles, and any name that would leave the directory — "..",
// encoded separators, and symlinks pointing outside (the directory is an
// os.Root). A directory path that comes to name another directory (a
// symlink swapped on deploy) is reopened within a second, at once for a
// name the old one lacks. Choosing the prefixes and directories is left
// to the caller.
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

// dirCheckEvery is how often, at most, a mount's Dir is looked at again
// to see whether it names another directory now (a deploy's swapped
// symlink); a name not found looks at once. A variable for tests.
var dirCheckEvery = time.Second

// epoch starts the monotonic clock of mount.nextCheck.
var epoch = time.Now()

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
	dir       atomic.Pointer[openDir] // what Dir named when last looked at
	nextCheck atomic.Int64            // when to look at Dir again, as time.Since(epoch)
	mu        sync.Mutex              // held while reopening Dir
}

// openDir is a directory opened as a root, with its identity (device and
// inode, through os.SameFile) to tell when the path names another one.
type openDir struct {
	root *os.Root
	fi   fs.FileInfo
}

// openDirectory opens path as a root and stats what was opened, not the
// path again: if the path changes in between, the identity kept is the
// open directory's, and the next request sees the change.
func openDirectory(path string) (*openDir, error) {
	root, err := os.OpenRoot(path)
	if err != nil {
		return nil, err
	}
	fi, err := root.Stat(".")
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("stat of the opened directory %s: %w", path, err)
	}
	return &openDir{root: root, fi: fi}, nil
}

// root is the directory to serve this request from. Dir is fixed at load,
// but what it names may change without a reload: a "current" symlink
// swapped to a new release, a directory deleted and made again. nginx
// resolves its root per request; here one stat of Dir every
// dirCheckEvery notices it (a stat per request would add about 2.5 µs,
// 15 %, to a small file's cost in BenchmarkServe), and so does a request whose name
// is not found (missing is set), which may be only in the new
// directory: a new release's files, or all of them once the old
// directory is deleted, are served at once.
//
// When Dir names nothing or no directory for now, the directory open
// stays: a deploy caught half-way keeps serving what it served, and a
// failed reopen is tried again at the next look.
func (m *mount) root(missing bool) *os.Root {
	d := m.dir.Load()
	now := int64(time.Since(epoch))
	next := m.nextCheck.Load()
	if !missing && now < next {
		return d.root
	}
	// Of the requests due to look, one does; the others go on with d.
	if !m.nextCheck.CompareAndSwap(next, now+int64(dirCheckEvery)) && !missing {
		return d.root
	}
	fi, err := os.Stat(m.Dir)
	if err != nil || !fi.IsDir() || os.SameFile(fi, d.fi) {
		return d.root
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if d = m.dir.Load(); os.SameFile(fi, d.fi) {
		return d.root // reopened meanwhile by another request
	}
	nd, err := openDirectory(m.Dir)
	if err != nil {
		return d.root
	}
	// The old root is not closed here: a request may be opening a file
	// in it. Its finalizer closes it once no request holds it, as Update
	// leaves it.
	m.dir.Store(nd)
	return nd.root
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
		d, err := openDirectory(m.Dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("serving %s: %w", m.Path, err))
			continue
		}
		nm := &mount{Mount: m}
		nm.dir.Store(d)
		next.list = append(next.list, nm)
	}
	if len(errs) > 0 {
		for _, m := range next.list {
			m.dir.Load().root.Close()
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
		errs = append(errs, m.dir.Load().root.Close())
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
	root := m.root(false)
	f, fi, err := openRegular(root, name)
	if errors.Is(err, fs.ErrNotExist) {
		// Perhaps in the directory Dir names now: look at once.
		if fresh := m.root(true); fresh != root {
			root = fresh
			f, fi, err = openRegular(root, name)
		}
	}
	if err != nil {
		httperr.Write(w, r, openFailure(err))
		return
	}
	defer f.Close()

	h := w.Header()
	if v, vf, vfi, ok := precompressed(root, name, r.Header.Get("Accept-Encoding")); ok {
		f.Close()
		f, fi = vf, vfi
		h.Set("Content-Encoding", v.coding)
		h.Set("ETag", etag(fi, v.coding))
	} else {
		h.Set("ETag", etag(fi, ""))
	}
	// Always a type, so that http.ServeContent never sniffs one: a file
	// of HTML put in an upload directory as "evil" must not become
	// text/html. nosniff tells the browser not to sniff either.
	h.Set("Content-Type", contentType(name))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Add("Vary", "Accept-Encoding")
	h.Set("Cache-Control", cacheControl(m.Cache, name))
	if rng := r.Header.Get("Range"); rng != "" {
		if fixed := fixRange(rng, fi.Size()); fixed != rng {
			r = r.Clone(r.Context())
			if fixed == "" {
				r.Header.Del("Range")
			} else {
				r.Header.Set("Range", fixed)
			}
		}
	}
	pw := &pooledWriter{ResponseWriter: w, s: s, size: fi.Size()}
	http.ServeContent(pw, r, name, fi.ModTime(), &sizedFile{f: f, size: fi.Size()})
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
// pooled buffer, so a transfer holds one buffer whatever its size; and
// the Content-Length of a precompressed variant sent whole.
type pooledWriter struct {
	http.ResponseWriter
	s    *Server
	size int64 // of the file sent
}

func (pw *pooledWriter) ReadFrom(src io.Reader) (int64, error) {
	buf := pw.s.bufs.Get().(*[bufSize]byte)
	defer pw.s.bufs.Put(buf)
	// Hide ReadFrom from io.CopyBuffer, which would call it again.
	return io.CopyBuffer(struct{ io.Writer }{pw.ResponseWriter}, src, buf[:])
}

// WriteHeader adds the Content-Length that http.ServeContent leaves out
// whenever Content-Encoding is set (for handlers that compress as they
// write; ours are files of known size): without it HTTP/1.1 falls back to
// chunked and a HEAD has no length. Only on a 200, which ServeContent
// sends with the whole file; it gives a 206 its length itself.
func (pw *pooledWriter) WriteHeader(code int) {
	if h := pw.Header(); code == http.StatusOK && h.Get("Content-Encoding") != "" && h.Get("Content-Length") == "" {
		h.Set("Content-Length", strconv.FormatInt(pw.size, 10))
	}
	pw.ResponseWriter.WriteHeader(code)
}

// Unwrap serves http.ResponseController.
func (pw *pooledWriter) Unwrap() http.ResponseWriter { return pw.ResponseWriter }

// ServeContent needs only Write and ReadFrom; Unwrap reaches the rest.
var _ io.ReaderFrom = (*pooledWriter)(nil)
