package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// ErrSpoolFull is returned (wrapped) by Buffer.Write when the body would
// pass the Spool's disk cap.
var ErrSpoolFull = errors.New("spool disk limit reached")

// errClosed is returned by a closed Buffer.
var errClosed = errors.New("spool buffer closed")

// ErrNoFiles is returned (wrapped) by Buffer.Write when the body must spill
// to a temp file and the Spool's temp file budget (Options.MaxFiles) stays
// used up for as long as the body may wait.
var ErrNoFiles = errors.New("spool temp file limit reached")

// Buffer holds one body: the first bytes in pooled memory segments, the rest
// in an unlinked temp file. Write appends; Reader reads from the start. A
// Buffer is safe for concurrent use; Close frees its memory and file at once,
// after which readers get an error.
type Buffer struct {
	s    *Spool
	kind string

	mu   sync.Mutex
	cond sync.Cond // L is &mu; signals writes, reads, done and gone

	// The bytes [base, size) of the body are held: the first memLen in
	// segs, then fileLen in f. Once a byte went to the file, every later
	// one does too (until a reset). The budget is charged memCap, the
	// memory the body holds: small first segments keep that close to the
	// bytes held (a one-byte body is charged 512, not a 32 KiB chunk),
	// and the budget stays a true bound on spool memory.
	segs    [][]byte  // pooled; all full but the last
	segsBuf [4][]byte // segs' first backing array: no allocation up to 4
	small   bool      // start with small segments (request bodies)
	share   int64     // memory this body may hold (Rules.MemoryPerBody)
	memCap  int64     // total length of segs, charged to the budget
	memLen  int64
	noMem   bool // the memory part is closed for this body
	f       *os.File
	fileLen int64
	base    int64
	size    int64

	// fileWait is how long opening the temp file may wait for the file
	// budget, cut short when waitDone closes (the client went away).
	fileWait time.Duration
	waitDone <-chan struct{}

	// Streaming (responses) state.
	readPos    int64 // bytes handed to the copier
	writerDone bool  // the handler returned
	gone       error // the client went away; writes fail with it

	usedDisk      bool // ever wrote to the file, for bulwark_spool_bodies_total
	diskErr       error
	diskErrLogged bool
	closed        bool
}

// NewBuffer returns an empty request-kind Buffer. Callers must Close it.
func (s *Spool) NewBuffer() *Buffer { return s.newBuffer(kindRequest, s.o().MemoryPerBody) }

// newBuffer returns a Buffer of kind that holds up to share bytes in memory.
func (s *Spool) newBuffer(kind string, share int64) *Buffer {
	// A request body may be one byte and a long wait (issue 14): it starts
	// small. A spooled response is past DirectMax, so it takes whole chunks.
	b := &Buffer{s: s, kind: kind, small: kind == kindRequest, share: share}
	b.segs = b.segsBuf[:0]
	b.cond.L = &b.mu
	s.active.Add(1)
	return b
}

// Write appends p to the body: into memory while this body's share and the
// Spool's budget allow, then into the temp file. It fails with an error
// wrapping ErrSpoolFull when the disk cap would be passed, and with the file
// system's error when the file cannot be created or written; the bytes
// before the failure are kept.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.writeLocked(p, false)
	if n > 0 {
		b.cond.Broadcast()
	}
	return n, err
}

func (b *Buffer) writeLocked(p []byte, force bool) (int, error) {
	if b.closed {
		return 0, errClosed
	}
	written := 0
	for len(p) > 0 && !b.noMem {
		free := b.tailLocked(force)
		if len(free) == 0 {
			b.noMem = true
			break
		}
		n := copy(free, p)
		b.memLen += int64(n)
		b.size += int64(n)
		written += n
		p = p[n:]
		force = false
	}
	if len(p) == 0 {
		return written, nil
	}
	n, err := b.writeFileLocked(p)
	return written + n, err
}

// tailLocked returns the free memory at the end of the body that its share
// (MemoryPerBody) leaves, adding a segment when the last one is full and
// the budget takes it; nil when there is none. With force, the share and
// the budget may be passed by one chunk (see writeStream).
func (b *Buffer) tailLocked(force bool) []byte {
	share := b.share
	if force {
		share = max(share, b.memLen+chunkSize)
	}
	if b.memLen >= share {
		return nil
	}
	if b.memLen == b.memCap {
		size := b.nextSegSize()
		if !b.s.reserveMem(int64(size), force) {
			return nil
		}
		b.segs = append(b.segs, b.s.getSeg(size))
		b.memCap += int64(size)
	}
	last := b.segs[len(b.segs)-1]
	free := last[int64(len(last))-(b.memCap-b.memLen):]
	if room := share - b.memLen; int64(len(free)) > room {
		free = free[:room]
	}
	return free
}

// nextSegSize is the size of the next memory segment: growing by four from
// segMin for a small-first body (so a one-byte body holds segMin bytes, not
// a chunk), then whole chunks.
func (b *Buffer) nextSegSize() int {
	if !b.small {
		return chunkSize
	}
	size := segMin
	for range b.segs {
		size *= 4
		if size >= chunkSize {
			return chunkSize
		}
	}
	return size
}

// space returns where the next read of a request body may go: the free
// memory at the end of the body while its share and the budget allow (see
// tailLocked), else nil, after which the body goes to its file. The caller
// reads into it without the lock and passes what it read to commit. Only
// the one goroutine filling a Buffer may use space, and nothing may Close
// the Buffer meanwhile (Requests fills and closes on one goroutine).
func (b *Buffer) space() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.noMem {
		return nil
	}
	free := b.tailLocked(false)
	if len(free) == 0 {
		b.noMem = true
	}
	return free
}

// commit appends the n bytes just read into the slice space returned:
// they are where they belong already, and were charged with the segment.
func (b *Buffer) commit(n int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed
	}
	b.memLen += int64(n)
	b.size += int64(n)
	return nil
}

func (b *Buffer) writeFileLocked(p []byte) (int, error) {
	if b.diskErr != nil {
		return 0, b.diskErr
	}
	need := int64(len(p))
	if !b.s.reserveDisk(need) {
		return 0, fmt.Errorf("spooling %d more bytes to %s: %w", need, b.s.o().Dir, ErrSpoolFull)
	}
	if b.f == nil {
		// The lock is held while waiting: for a request body only this
		// goroutine uses the Buffer; a response does not wait.
		if !b.s.files.acquire(b.s.o().MaxFiles, b.fileWait, b.waitDone) {
			b.s.releaseDisk(need)
			return 0, fmt.Errorf("opening a temp file for %d bytes: %d open: %w", need, b.s.files.count(), ErrNoFiles)
		}
		f, err := b.s.openTemp()
		if err != nil {
			b.s.files.release(b.s.o().MaxFiles)
			b.s.releaseDisk(need)
			b.diskErr = err
			return 0, err
		}
		b.f = f
		b.usedDisk = true
	}
	n, err := b.f.Write(p)
	b.fileLen += int64(n)
	b.size += int64(n)
	b.s.releaseDisk(need - int64(n))
	if err != nil {
		b.diskErr = fmt.Errorf("writing spool file in %s: %w", b.s.o().Dir, err)
		return n, b.diskErr
	}
	return n, nil
}

// readAtLocked copies body bytes from absolute offset off into p and reports
// how many; zero at the end of what is held.
func (b *Buffer) readAtLocked(p []byte, off int64) (int, error) {
	if b.closed {
		return 0, errClosed
	}
	if off < b.base {
		return 0, fmt.Errorf("spool offset %d already released", off)
	}
	rel := off - b.base
	if rel < b.memLen {
		n := 0
		var start int64 // offset of seg in the body
		for _, seg := range b.segs {
			end := min(start+int64(len(seg)), b.memLen)
			if rel < end {
				c := copy(p[n:], seg[rel-start:end-start])
				n += c
				rel += int64(c)
			}
			if n == len(p) || rel >= b.memLen {
				break
			}
			start += int64(len(seg))
		}
		return n, nil
	}
	frel := rel - b.memLen
	if frel >= b.fileLen {
		return 0, nil
	}
	want := min(int64(len(p)), b.fileLen-frel)
	n, err := b.f.ReadAt(p[:want], frel)
	if err == io.EOF && int64(n) == want {
		err = nil
	}
	if err != nil {
		return n, fmt.Errorf("reading spool file: %w", err)
	}
	return n, nil
}

// Size reports the number of bytes written so far.
func (b *Buffer) Size() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.size
}

// OnDisk reports whether any of the body went to the temp file.
func (b *Buffer) OnDisk() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.usedDisk
}

// Reader returns a reader of the body from its first byte to what has been
// written when it reads; it does not wait for more. Each call returns an
// independent reader; closing it does not close the Buffer.
func (b *Buffer) Reader() io.ReadCloser { return &reader{b: b} }

type reader struct {
	b   *Buffer
	off int64
}

func (r *reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.b.mu.Lock()
	n, err := r.b.readAtLocked(p, r.off)
	r.b.mu.Unlock()
	r.off += int64(n)
	if n == 0 && err == nil {
		return 0, io.EOF
	}
	return n, err
}

func (r *reader) Close() error { return nil }

// Close frees the Buffer's memory and temp file at once and wakes anyone
// waiting on it. It is safe to call more than once.
func (b *Buffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.cond.Broadcast()
	where := "memory"
	if b.usedDisk {
		where = "disk"
	}
	b.s.bodies[b.kind+"/"+where].Inc()
	b.releaseLocked()
	b.s.active.Add(-1)
	return nil
}

// releaseLocked hands back the memory segments and the file.
func (b *Buffer) releaseLocked() {
	b.releaseMemLocked()
	if b.f != nil {
		b.f.Close()
		b.f = nil
		b.s.files.release(b.s.o().MaxFiles)
	}
	b.s.releaseDisk(b.fileLen)
	b.fileLen = 0
}

// releaseMemLocked hands back the memory segments and their charge.
func (b *Buffer) releaseMemLocked() {
	b.s.releaseMem(b.memCap)
	for _, seg := range b.segs {
		b.s.putSeg(seg)
	}
	clear(b.segs)
	b.segs = b.segs[:0]
	b.memCap, b.memLen = 0, 0
}

// --- streaming, for Responses: one writer (the handler), one reader (the copier).

// finish marks the writer done and wakes the copier.
func (b *Buffer) finish() {
	b.mu.Lock()
	b.writerDone = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

// markGone records that the client went away: pending and later writes fail
// with err, and waiters wake.
func (b *Buffer) markGone(err error) {
	b.mu.Lock()
	if b.gone == nil {
		b.gone = err
	}
	b.cond.Broadcast()
	b.mu.Unlock()
}

// wake wakes the copier (a handler's Flush).
func (b *Buffer) wake() {
	b.mu.Lock()
	b.cond.Broadcast()
	b.mu.Unlock()
}

// next waits until bytes from off are held, the writer is done or the client
// is gone; it copies what it can into p. done reports that the writer
// finished and every byte has now been handed out.
func (b *Buffer) next(p []byte, off int64) (n int, done bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for off == b.size && !b.writerDone && b.gone == nil && !b.closed {
		b.cond.Wait()
	}
	if b.gone != nil {
		return 0, false, b.gone
	}
	n, err = b.readAtLocked(p, off)
	if n > 0 {
		b.readPos = off + int64(n)
		b.cond.Broadcast() // a writer may wait for the copier to catch up
	}
	return n, b.writerDone && off+int64(n) == b.size, err
}

// caughtUp reports whether the copier has handed out everything written.
func (b *Buffer) caughtUp(off int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return off == b.size
}

// writeStream appends p for a streaming reader. Where the spool has no room
// (the disk cap, the file budget, or a file that cannot be written), it
// does not fail: it
// waits until the copier has handed out everything held, releases the held
// bytes, and goes on, so a response past the cap is fed in lock step with
// the client rather than refused. It fails only when the client is gone.
func (b *Buffer) writeStream(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	written := 0
	for len(p) > 0 {
		if b.gone != nil {
			return written, b.gone
		}
		n, err := b.writeLocked(p, false)
		if n == 0 && err != nil && b.size == b.base && !errors.Is(err, errClosed) {
			// Nothing held and still no room (budget and disk both used
			// up): take one chunk past the budget, so the response moves
			// on in step with the client. Bounded: one chunk per response.
			b.noMem = false
			n, err = b.writeLocked(p, true)
		}
		written += n
		p = p[n:]
		if n > 0 {
			b.cond.Broadcast()
		}
		if err == nil {
			continue
		}
		if errors.Is(err, errClosed) {
			return written, err
		}
		if !errors.Is(err, ErrSpoolFull) && !errors.Is(err, ErrNoFiles) && !b.diskErrLogged {
			b.diskErrLogged = true
			b.s.warn(logResponseWrite, "spool: response spool file failed; feeding the client in step", "dir", b.s.o().Dir, "err", err)
		}
		// No room: wait for the copier to catch up, then start over empty.
		for b.readPos < b.size && b.gone == nil && !b.closed {
			b.cond.Wait()
		}
		if b.gone != nil {
			return written, b.gone
		}
		if b.closed {
			return written, errClosed
		}
		b.resetLocked()
	}
	return written, nil
}

// resetLocked drops every byte held (the copier has them all) and starts the
// body over empty at offset size; the file, if any, is truncated and reused.
func (b *Buffer) resetLocked() {
	b.releaseMemLocked()
	b.noMem = false
	if b.f != nil && b.diskErr == nil {
		if err := b.f.Truncate(0); err != nil {
			b.diskErr = fmt.Errorf("truncating spool file: %w", err)
		} else if _, err := b.f.Seek(0, io.SeekStart); err != nil {
			b.diskErr = fmt.Errorf("rewinding spool file: %w", err)
		}
	}
	b.s.releaseDisk(b.fileLen)
	b.fileLen = 0
	b.base = b.size
}
