package main

import (
	"crypto/sha256"
	"fmt"
	"io"
)

// patternBlock is the block size of the download pattern; it matches BLOCK
// in bench/app/app.py.
const patternBlock = 1 << 20

// PatternSHA256 returns the sha256 of the first size bytes of the download
// pattern for seed: block k is sha256("seed:k") repeated to 1 MiB, exactly as
// bench/app/app.py streams it.
func PatternSHA256(seed string, size int64) string {
	h := sha256.New()
	var block [patternBlock]byte
	for k := int64(0); size > 0; k++ {
		d := sha256.Sum256(fmt.Appendf(nil, "%s:%d", seed, k))
		for i := 0; i < patternBlock; i += len(d) {
			copy(block[i:], d[:])
		}
		n := min(size, patternBlock)
		_, _ = h.Write(block[:n])
		size -= n
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// randomReader yields a reproducible, incompressible byte stream for uploads.
type randomReader struct {
	state uint64
}

func (r *randomReader) Read(p []byte) (int, error) {
	for i := range p {
		// xorshift64*: fast and good enough to defeat any compression.
		r.state ^= r.state >> 12
		r.state ^= r.state << 25
		r.state ^= r.state >> 27
		p[i] = byte((r.state * 2685821657736338717) >> 56)
	}
	return len(p), nil
}

var _ io.Reader = (*randomReader)(nil)
