package spool

import "testing"

// A body arriving over TLS comes in reads of at most one 16 KiB record,
// never a whole chunk. Such reads must keep the chunk, not trade it for
// the small segment and back on every read.
func TestScratchKeepsChunkForTLSSizedReads(t *testing.T) {
	s := &Spool{}
	var sc scratch
	defer sc.free(s)

	small := sc.get(s)
	sc.used(len(small)) // the client streams: the next read gets a chunk
	big := sc.get(s)
	if len(big) <= len(small) {
		t.Fatalf("after a full small read got %d bytes, want a chunk", len(big))
	}
	const tlsRecord = 16 << 10
	for i := range 4 {
		sc.used(tlsRecord)
		again := sc.get(s)
		if &again[0] != &big[0] {
			t.Fatalf("read %d: a %d-byte read dropped the chunk", i, tlsRecord)
		}
	}
	sc.used(100) // trickling again: back to the small segment
	if got := sc.get(s); len(got) != len(small) {
		t.Fatalf("after a 100-byte read got %d bytes, want the small segment (%d)", len(got), len(small))
	}
}
