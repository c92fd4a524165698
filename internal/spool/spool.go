package spool

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"bulwark/internal/clientip"
	"bulwark/internal/httperr"
)

// Defaults used for zero Options fields, and the Retry-After of a 507.
const (
	// DefaultMemoryPerBody is nginx's client_body_buffer_size on 64-bit
	// hosts (the guide's "128k").
	DefaultMemoryPerBody = 128 << 10
	// DefaultMemoryBudget bounds all spool memory: 128 bodies fully in
	// memory at the default MemoryPerBody, a small share of a 512 MB host.
	DefaultMemoryBudget = 16 << 20
	// DefaultDiskLimit bounds spool disk use: fifty 20 MiB uploads at once
	// (the low profile's max_body), well inside a small VPS's disk.
	DefaultDiskLimit = 1 << 30
	// DefaultSendTimeout is nginx's send_timeout: how long one write to a
	// client may block before the client is given up.
	DefaultSendTimeout = 60 * time.Second
	// SpoolFullRetryAfter is the Retry-After sent with a 507 for a full
	// spool: spool space frees as soon as the bodies in flight finish.
	SpoolFullRetryAfter = 5 * time.Second
	// DefaultFileWait is how long a request body that must spill waits for
	// the temp file budget before a 503: an upload should rather stall a
	// few seconds (the client is not read meanwhile) than fail, and a
	// budget used up for longer is an attack or a crowd a retry serves
	// better. It is well inside browsers' and proxies' idle timeouts.
	DefaultFileWait = 10 * time.Second
	// NoFilesRetryAfter is the Retry-After sent with the 503 of an
	// exhausted temp file budget.
	NoFilesRetryAfter = 5 * time.Second
	// DefaultBodiesPerIP caps the request bodies being received at once
	// from one client address. A browser uploads over at most 6 HTTP/1.1
	// connections per host, and a page rarely runs more than a handful
	// of uploads at once over HTTP/2; an office NAT of a hundred users
	// seldom has dozens of bodies arriving at the same moment (a body
	// counts only while it arrives). 128 leaves room for both, and bounds
	// one address to 128 temp files and, with bodies that send one byte
	// and wait, about 128 × 1 KiB of spool memory (README, "Request
	// bodies").
	DefaultBodiesPerIP = 128
	// BodiesPerIPRetryAfter is the Retry-After sent with the 429 of a
	// client address over BodiesPerIP: a slot frees as soon as one of its
	// bodies has arrived.
	BodiesPerIPRetryAfter = time.Second
)

// chunkSize is the size of one pooled memory chunk and of the copy buffers.
// 32 KiB matches io.Copy's buffer and the proxy's copy size.
const chunkSize = 32 << 10

// segMin is the first memory segment of a request body; the next ones grow
// by four (2 KiB, 8 KiB) up to chunkSize. A body that sent one byte and
// waits holds 512 bytes, not a chunk (issue 14: 20 000 such streams held
// 640 MiB in chunks and read buffers).
const segMin = 512

// filePattern names the temp files; New sweeps files matching it.
const filePattern = "bulwark-spool-*"

// Options configures a Spool. The zero value is valid: defaults everywhere,
// nothing buffered, no body limit.
type Options struct {
	// Dir is the directory for temp files. If empty, DefaultDir() is used.
	// It is created with mode 0700 when missing.
	Dir string
	// MemoryPerBody is how many bytes of one body are kept in memory before
	// the rest spills to a temp file (config limits.body_buffer). If zero,
	// DefaultMemoryPerBody is used; negative means no memory: every body
	// goes to disk.
	MemoryPerBody int64
	// MemoryBudget caps the memory of all bodies of this Spool together;
	// once reached, new bodies go to disk from their first byte. If zero,
	// DefaultMemoryBudget is used; negative means no memory at all.
	MemoryBudget int64
	// DiskLimit caps the bytes of all temp files together. A request whose
	// body would pass it is answered 507 (reason "spool_full"). A response
	// that would pass it is not failed: the handler's writes block until
	// the client has caught up, then the spool is reused (see Responses).
	// If zero, DefaultDiskLimit is used; negative means no disk: bodies
	// larger than what memory holds are refused (requests) or fed to the
	// client in lock step (responses).
	DiskLimit int64
	// MaxBody is the largest request body accepted, by Content-Length or
	// by counting a chunked body; larger ones are answered 413 (reason
	// "body_too_large"). Zero or negative means no limit.
	MaxBody int64
	// MaxFiles caps the temp files open at once, for requests and
	// responses together. A request body that must spill while all are
	// taken waits up to FileWait for one, then is answered 503 with
	// Retry-After (reason "spool_fds"); a response is fed to the client in
	// step instead, as past DiskLimit. If zero, DefaultMaxFiles() is used;
	// negative means no cap.
	MaxFiles int
	// FileWait is how long a request body waits for a temp file when
	// MaxFiles are open. If zero, DefaultFileWait is used; negative means
	// no wait: the 503 comes at once.
	FileWait time.Duration
	// BodiesPerIP caps the spooled request bodies being received at once
	// from one client, as the other per-client limits count one: its
	// address (X-Forwarded-For believed from TrustedProxies only), an
	// IPv6 client's /64. The next one is answered 429 with Retry-After
	// (reason "bodies_per_ip") before any of it is read. A body stops
	// counting once it has arrived. If zero, DefaultBodiesPerIP is used;
	// negative means no cap. It applies with BufferRequests only: without
	// it, bodies are streamed to the app within its concurrency slots.
	BodiesPerIP int
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// for BodiesPerIP, so that clients behind one proxy (a CDN, a local
	// nginx) are not counted as one.
	TrustedProxies []netip.Prefix
	// BufferRequests turns request spooling on. When false, Requests passes
	// bodies through, but still enforces MaxBody by counting.
	BufferRequests bool
	// BufferResponses turns response spooling on. When false, Responses
	// passes answers through (it still strips X-Accel-Buffering).
	BufferResponses bool
	// StreamPaths lists URL path prefixes whose responses are never
	// buffered (streaming routes). Nil means none.
	StreamPaths []string
	// SendTimeout bounds one write of a spooled response to the client (as
	// nginx's send_timeout); a client that accepts nothing for this long is
	// given up and its spool freed. If zero, DefaultSendTimeout is used;
	// negative means no per-write deadline (the server's own applies).
	SendTimeout time.Duration
	// RulesFor returns a request's own values of the per-request options
	// (Rules), and false when the Options' values apply to it. Nil means
	// they apply to every request.
	RulesFor func(*http.Request) (Rules, bool)
	// Logger receives spool-full and write-error lines. If nil, logs are
	// discarded.
	Logger *slog.Logger
	// Metrics is where the bulwark_spool_* series are registered. If nil, a
	// private set is used.
	Metrics *metrics.Set
}

// Rules are the options a request may have its own values of (a
// [[route]]'s), read once when the request arrives.
type Rules struct {
	// MemoryPerBody is as Options.MemoryPerBody, for this request's body
	// and its answer's; zero means Options.MemoryPerBody, negative none.
	MemoryPerBody int64
	// BufferRequests and BufferResponses are as in Options. StreamPaths
	// still apply: a path listed there is never buffered.
	BufferRequests, BufferResponses bool
	// SendTimeout is as Options.SendTimeout; zero means Options'.
	SendTimeout time.Duration
}

// rules returns the values in force for r.
func (s *Spool) rules(r *http.Request) Rules {
	o := s.o()
	if o.RulesFor != nil {
		if ru, ok := o.RulesFor(r); ok {
			switch {
			case ru.MemoryPerBody == 0:
				ru.MemoryPerBody = o.MemoryPerBody
			case ru.MemoryPerBody < 0:
				ru.MemoryPerBody = 0
			}
			if ru.SendTimeout == 0 {
				ru.SendTimeout = o.SendTimeout
			}
			return ru
		}
	}
	return Rules{MemoryPerBody: o.MemoryPerBody, BufferRequests: o.BufferRequests,
		BufferResponses: o.BufferResponses, SendTimeout: o.SendTimeout}
}

func (o Options) withDefaults() Options {
	if o.Dir == "" {
		o.Dir = DefaultDir()
	}
	switch {
	case o.MemoryPerBody == 0:
		o.MemoryPerBody = DefaultMemoryPerBody
	case o.MemoryPerBody < 0:
		o.MemoryPerBody = 0
	}
	switch {
	case o.MemoryBudget == 0:
		o.MemoryBudget = DefaultMemoryBudget
	case o.MemoryBudget < 0:
		o.MemoryBudget = 0
	}
	switch {
	case o.DiskLimit == 0:
		o.DiskLimit = DefaultDiskLimit
	case o.DiskLimit < 0:
		o.DiskLimit = 0
	}
	if o.MaxBody < 0 {
		o.MaxBody = 0
	}
	if o.SendTimeout == 0 {
		o.SendTimeout = DefaultSendTimeout
	}
	if o.MaxFiles == 0 {
		o.MaxFiles = DefaultMaxFiles()
	}
	if o.FileWait == 0 {
		o.FileWait = DefaultFileWait
	}
	if o.BodiesPerIP == 0 {
		o.BodiesPerIP = DefaultBodiesPerIP
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	return o
}

// Stats is a snapshot of a Spool's resource use.
type Stats struct {
	// MemoryBytes is the memory held by bodies in flight.
	MemoryBytes int64
	// DiskBytes is the bytes held in temp files.
	DiskBytes int64
	// ActiveBodies is the number of bodies being spooled or fed.
	ActiveBodies int
	// Files is the number of temp files open.
	Files int
}

// Spool holds the shared budgets, the chunk pool and the metrics of request
// and response spooling. It is safe for concurrent use.
type Spool struct {
	opts atomic.Pointer[Options] // swapped whole by Update; read through o()

	mem    atomic.Int64 // bytes of memory chunks held
	disk   atomic.Int64 // bytes written to temp files and not yet freed
	active atomic.Int64 // bodies open

	chunks sync.Pool    // *[chunkSize]byte, for body memory and copy buffers
	segs   [3]sync.Pool // *[segMin]byte, *[4*segMin]byte, *[16*segMin]byte

	files fileBudget      // temp files open, against MaxFiles
	addrs clientip.Counts // request bodies being received, per client address

	// openTemp creates an exclusive temp file and unlinks it; a seam so
	// tests can inject a file whose writes fail.
	openTemp func() (*os.File, error)

	lastLog [numLogKinds]atomic.Int64 // unix nanos of the last warning of each kind

	memGauge   *metrics.Gauge
	diskGauge  *metrics.Gauge
	filesGauge *metrics.Gauge
	bodies     map[string]*metrics.Counter // kind+"/"+where
	rejected   map[string]*metrics.Counter // reason
	refused    map[string]*metrics.Counter // reason, of bulwark_rejected_total
}

// Metric label values of bulwark_spool_rejected_total. The last two, which
// keep one client from exhausting the box, are counted in
// bulwark_rejected_total too.
const (
	reasonTooLarge   = httperr.ReasonBodyTooLarge
	reasonSpoolFull  = "spool_full"
	reasonWriteError = "write_error"
	reasonNoFiles    = "spool_fds"
	reasonPerIP      = "bodies_per_ip"
)

const (
	kindRequest  = "request"
	kindResponse = "response"
)

// New returns a Spool for o. It creates o.Dir when missing, checks that it
// can create files there, and removes leftovers of a crash (only files
// matching the package's own name pattern).
func New(o Options) (*Spool, error) {
	o = o.withDefaults()
	s := &Spool{}
	s.opts.Store(&o)
	s.openTemp = s.createTemp
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating spool dir: %w", err)
	}
	if err := probeDir(o.Dir); err != nil {
		return nil, err
	}
	if n, err := sweep(o.Dir); err != nil {
		o.Logger.Warn("spool: sweeping leftover temp files", "dir", o.Dir, "err", err)
	} else if n > 0 {
		o.Logger.Info("spool: removed leftover temp files", "dir", o.Dir, "count", n)
	}

	set := o.Metrics
	s.memGauge = set.GetOrCreateGauge("bulwark_spool_memory_bytes", nil)
	s.diskGauge = set.GetOrCreateGauge("bulwark_spool_disk_bytes", nil)
	s.bodies = make(map[string]*metrics.Counter, 4)
	for _, kind := range []string{kindRequest, kindResponse} {
		for _, where := range []string{"memory", "disk"} {
			s.bodies[kind+"/"+where] = set.GetOrCreateCounter(
				`bulwark_spool_bodies_total{kind="` + kind + `",where="` + where + `"}`)
		}
	}
	s.filesGauge = set.GetOrCreateGauge("bulwark_spool_files", nil)
	s.files.gauge = s.filesGauge
	s.rejected = make(map[string]*metrics.Counter, 5)
	for _, reason := range []string{reasonTooLarge, reasonSpoolFull, reasonWriteError, reasonNoFiles, reasonPerIP} {
		s.rejected[reason] = set.GetOrCreateCounter(`bulwark_spool_rejected_total{reason="` + reason + `"}`)
	}
	// bulwark_rejected_total is shared with the front door's refusals;
	// GetOrCreateCounter makes the families one.
	s.refused = make(map[string]*metrics.Counter, 2)
	for _, reason := range []string{reasonNoFiles, reasonPerIP} {
		s.refused[reason] = set.GetOrCreateCounter(`bulwark_rejected_total{reason="` + reason + `"}`)
	}
	return s, nil
}

// o returns the options in force.
func (s *Spool) o() *Options { return s.opts.Load() }

// Update applies new limits from a configuration reload to bodies that
// start from now on: MemoryPerBody, MemoryBudget, DiskLimit, MaxBody,
// MaxFiles, FileWait, BodiesPerIP, BufferRequests, BufferResponses,
// StreamPaths, SendTimeout and RulesFor. The
// directory, logger and metrics stay those given to New; a different Dir
// is reported as an error and otherwise ignored.
func (s *Spool) Update(o Options) error {
	cur := s.o()
	next := o
	next.Logger, next.Metrics = cur.Logger, cur.Metrics
	var err error
	if o.Dir != "" && o.Dir != cur.Dir {
		err = fmt.Errorf("spool dir %s: a new directory takes effect on restart (still using %s)", o.Dir, cur.Dir)
	}
	next.Dir = cur.Dir
	next = next.withDefaults()
	s.opts.Store(&next)
	s.files.grant(next.MaxFiles) // a raised cap lets waiting bodies on
	return err
}

// Dir reports the directory the Spool writes its temp files to.
func (s *Spool) Dir() string { return s.o().Dir }

// Stats reports the Spool's current memory, disk and body counts.
func (s *Spool) Stats() Stats {
	return Stats{
		MemoryBytes:  s.mem.Load(),
		DiskBytes:    s.disk.Load(),
		ActiveBodies: int(s.active.Load()),
		Files:        s.files.count(),
	}
}

// reserveMem takes n bytes of the memory budget, or reports false when that
// would pass it. With force it always succeeds (one chunk per response that
// would otherwise make no progress; see Buffer.writeStream).
func (s *Spool) reserveMem(n int64, force bool) bool {
	for {
		cur := s.mem.Load()
		if !force && cur+n > s.o().MemoryBudget {
			return false
		}
		if s.mem.CompareAndSwap(cur, cur+n) {
			s.memGauge.Add(float64(n))
			return true
		}
	}
}

func (s *Spool) releaseMem(n int64) {
	if n != 0 {
		s.mem.Add(-n)
		s.memGauge.Add(-float64(n))
	}
}

// reserveDisk takes n bytes of the disk cap, or reports false when that
// would pass it.
func (s *Spool) reserveDisk(n int64) bool {
	for {
		cur := s.disk.Load()
		if cur+n > s.o().DiskLimit {
			return false
		}
		if s.disk.CompareAndSwap(cur, cur+n) {
			s.diskGauge.Add(float64(n))
			return true
		}
	}
}

func (s *Spool) releaseDisk(n int64) {
	if n != 0 {
		s.disk.Add(-n)
		s.diskGauge.Add(-float64(n))
	}
}

// diskRoom reports whether n more bytes would fit under the disk cap now.
func (s *Spool) diskRoom(n int64) bool {
	return s.disk.Load()+n <= s.o().DiskLimit
}

// memRoom reports how many bytes of the memory budget are free now.
func (s *Spool) memRoom() int64 {
	return max(0, s.o().MemoryBudget-s.mem.Load())
}

// getSeg returns a pooled memory segment of size bytes: segMin, 4*segMin,
// 16*segMin or chunkSize.
func (s *Spool) getSeg(size int) []byte {
	switch size {
	case segMin:
		if p, ok := s.segs[0].Get().(*[segMin]byte); ok {
			return p[:]
		}
		return new([segMin]byte)[:]
	case 4 * segMin:
		if p, ok := s.segs[1].Get().(*[4 * segMin]byte); ok {
			return p[:]
		}
		return new([4 * segMin]byte)[:]
	case 16 * segMin:
		if p, ok := s.segs[2].Get().(*[16 * segMin]byte); ok {
			return p[:]
		}
		return new([16 * segMin]byte)[:]
	}
	return s.getChunk()[:]
}

// putSeg returns a segment from getSeg to its pool. The pools hold array
// pointers, so putting one back does not allocate.
func (s *Spool) putSeg(seg []byte) {
	switch len(seg) {
	case segMin:
		s.segs[0].Put((*[segMin]byte)(seg))
	case 4 * segMin:
		s.segs[1].Put((*[4 * segMin]byte)(seg))
	case 16 * segMin:
		s.segs[2].Put((*[16 * segMin]byte)(seg))
	case chunkSize:
		s.putChunk((*[chunkSize]byte)(seg))
	}
}

// getChunk returns a pooled chunk of chunkSize bytes.
func (s *Spool) getChunk() *[chunkSize]byte {
	if p, ok := s.chunks.Get().(*[chunkSize]byte); ok {
		return p
	}
	return new([chunkSize]byte)
}

func (s *Spool) putChunk(p *[chunkSize]byte) { s.chunks.Put(p) }

// warn logs a spool problem at most once a second per kind of problem, so
// a full disk under load does not flood the log.
func (s *Spool) warn(kind logKind, msg string, args ...any) {
	now := time.Now().UnixNano()
	last := &s.lastLog[kind]
	prev := last.Load()
	if now-prev < int64(time.Second) || !last.CompareAndSwap(prev, now) {
		return
	}
	s.o().Logger.Warn(msg, args...)
}

// logKind selects the rate limit of a warning.
type logKind int

const (
	logSpoolFull logKind = iota
	logNoFiles
	logRequestWrite
	logResponseWrite
	numLogKinds
)
