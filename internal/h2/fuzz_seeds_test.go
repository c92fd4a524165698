package h2

import "bytes"

// h2Seeds are programs for the cases the HTTP/2 tests cover one by one
// (TestH2MalformedRequestsReset, TestH2EndlessContinuationEndsConnection,
// TestH2StreamLimitRefuses, TestH2HeaderTooLarge, TestH2Trailers, ...) and
// for the attacks behind the advisories docs/protocol.md lists.
func h2Seeds() [][]byte {
	// hdr opens a stream: stream index, flags (1 END_STREAM, 2 no
	// END_HEADERS, 8 padded, 0x20 self-dependency), method and path
	// indexes, extra field index, split point.
	hdr := func(stream, flags, method, path, extra, split byte) []byte {
		return []byte{opHeaders, stream, flags, method, path, extra, split}
	}
	data := func(stream, flags, n byte) []byte { return []byte{opData, stream, flags, n} }
	rst := func(stream, code byte) []byte { return []byte{opRSTStream, stream, code} }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	seeds := [][]byte{
		hdr(0, 1, 0, 0, 0, 0), // GET /
		cat(hdr(0, 0, 1, 0, 0, 0), data(0, 0, 10), data(0, 1, 10)),                                      // POST with a body
		cat(hdr(0, 1, 0, 1, 0, 0), hdr(1, 1, 0, 2, 0, 0), hdr(2, 1, 0, 4, 0, 0), hdr(3, 1, 0, 5, 0, 0)), // wait, big, trailer, early; past the stream limit
		hdr(0, 1, 0, 3, 0, 0), // panic
	}
	// Each malformed extra field, on its own stream.
	for i := range h2FuzzExtras {
		seeds = append(seeds, hdr(0, 1, 0, 0, byte(i), 0))
	}
	// Each method and path.
	for i := range h2FuzzMethods {
		seeds = append(seeds, hdr(0, 1, byte(i), 0, 0, 0))
	}
	for i := range h2FuzzPaths {
		seeds = append(seeds, hdr(0, 1, 0, byte(i), 0, 0))
	}
	// Rapid reset (CVE-2023-44487): open and reset streams in a row.
	var rapid []byte
	for i := byte(0); i < 8; i++ {
		rapid = cat(rapid, hdr(i%4, 0, 1, 1, 0, 0), rst(i%4, 8))
	}
	seeds = append(seeds, rapid)
	// CONTINUATION flood (CVE-2023-45288, CVE-2024-27316): a block that
	// never ends.
	cont := hdr(0, 3, 0, 0, 0, 0)
	for i := 0; i < 40; i++ {
		cont = cat(cont, []byte{opContinuation, 0, 0, 13})
	}
	seeds = append(seeds, cont)
	// Frames inside a header block, and CONTINUATION on the wrong stream.
	seeds = append(seeds, cat(hdr(0, 2, 0, 0, 0, 0), []byte{opPing, 0}), cat(hdr(0, 2, 0, 0, 0, 0), []byte{opContinuation, 1, 1, 0}))
	// A header block split across CONTINUATION frames.
	seeds = append(seeds, hdr(0, 1, 0, 0, 13, 5))
	// Header too large (431), then a request that must still decode.
	seeds = append(seeds, cat(hdr(0, 1, 0, 0, 13, 0), hdr(0, 1, 0, 0, 13, 0), hdr(1, 1, 0, 0, 0, 0)))
	// Ping, settings and empty-frame floods (CVE-2019-9512, -9515, -9518).
	var flood []byte
	for i := 0; i < 20; i++ {
		flood = cat(flood, []byte{opPing, 0, byte(i), 0, 0, 0, 0, 0, 0, 0}, []byte{opSettings, 0, 0}, []byte{opRaw, 0xa, 0, 4, 0})
	}
	seeds = append(seeds, flood)
	// Zero-length HEADERS (CVE-2019-9516) and raw HPACK: an oversized
	// table size update, an index past the table, a huge integer.
	seeds = append(seeds,
		[]byte{opRawHeaders, 0, 5, 0},
		[]byte{opRawHeaders, 0, 5, 3, 0x3f, 0xe1, 0x7f},
		[]byte{opRawHeaders, 0, 5, 1, 0xff},
		[]byte{opRawHeaders, 0, 5, 6, 0x7f, 0xff, 0xff, 0xff, 0xff, 0x0f},
	)
	// Flow control: a window of 0, then a WINDOW_UPDATE; an overflowing
	// one; DATA beyond the window; SETTINGS_INITIAL_WINDOW_SIZE changes.
	seeds = append(seeds,
		cat([]byte{opSettings, 0, 1, 4, 0, 0, 0, 0}, hdr(0, 1, 0, 2, 0, 0), []byte{opWindowUpdate, 0, 0, 0, 0x10, 0}),
		cat(hdr(0, 0, 1, 0, 0, 0), []byte{opWindowUpdate, 0, 0x7f, 0xff, 0xff, 0xff}, []byte{opWindowUpdate, 4, 0x7f, 0xff, 0xff, 0xff}),
		cat(hdr(0, 0, 1, 0, 0, 0), data(0, 0xe0, 255), data(0, 0xe0, 255), data(0, 0xe1, 255)),
		cat([]byte{opSettings, 0, 1, 4, 0x7f, 0xff, 0xff, 0xff}, hdr(0, 1, 0, 2, 0, 0)),
	)
	// Streams and IDs: data on an idle stream, headers on stream 0 and on
	// an even stream, a stream ID going down, RST_STREAM on an idle one,
	// trailers, trailers without END_STREAM, priority on itself, GOAWAY
	// from the client, PUSH_PROMISE from the client.
	seeds = append(seeds,
		data(0, 1, 1),
		hdr(4, 1, 0, 0, 0, 0),
		hdr(5, 1, 0, 0, 0, 0),
		cat(hdr(1, 1, 0, 0, 0, 0), hdr(0, 1, 0, 0, 0, 0)),
		rst(3, 8),
		cat(hdr(0, 0, 1, 4, 11, 0), data(0, 0, 4), []byte{opContinuation, 0, 1, 0}, hdr(0, 1, 0, 0, 0, 0)),
		cat(hdr(0, 0, 1, 0, 0, 0), hdr(0, 0, 0, 0, 0, 0)),
		hdr(0, 0x21, 0, 0, 0, 0),
		cat(hdr(0, 0, 1, 1, 0, 0), []byte{opGoAway, 0, 0}),
		[]byte{opRaw, 5, 4, 0, 4, 0, 0, 0, 3},
		cat(hdr(0, 0, 1, 0, 5, 0), data(0, 1, 0)),    // content-length 1, no body
		cat(hdr(0, 0, 1, 0, 10, 0), data(0, 1, 1)),   // expect 100-continue
		cat(hdr(0, 1, 0, 0, 0, 0), data(0, 1, 1)),    // DATA after END_STREAM
		cat(hdr(0, 0x18, 1, 0, 0, 0)),                // padded HEADERS
		cat(hdr(0, 0, 1, 0, 0, 0), data(0, 0x0f, 0)), // padding longer than DATA
		[]byte{opSettings, 0, 1, 5, 0, 0, 0, 1},      // MAX_FRAME_SIZE too small
		[]byte{opSettings, 0, 1, 2, 0, 0, 0, 2},      // ENABLE_PUSH 2
		[]byte{opRaw, 4, 0, 4, 5, 1, 2, 3, 4, 5},     // SETTINGS length not a multiple of 6
		[]byte{opRaw, 6, 0, 4, 4, 1, 2, 3, 4},        // PING of 4 bytes
		[]byte{opRaw, 8, 0, 4, 3, 0, 0, 1},           // WINDOW_UPDATE of 3 bytes
		[]byte{opRaw, 3, 0, 4, 4, 0, 0, 0, 8},        // RST_STREAM on stream 0
		[]byte{opRaw, 0xb, 0, 0, 3, 1, 2, 3},         // an unknown frame type
		[]byte{opSettings, 0, 1, 5, 0, 0, 0, 0},      // MAX_FRAME_SIZE 0 (CVE-2026-33814)
	)
	// Frame types 0xa-0xf, which made x/net's server panic
	// (CVE-2026-27141), alone and inside a header block.
	for typ := byte(0xa); typ <= 0xf; typ++ {
		seeds = append(seeds,
			[]byte{opRaw, typ, 0xff, 0, 4, 1, 2, 3, 4},
			[]byte{opRaw, typ, 0, 4, 0},
			cat(hdr(0, 2, 0, 0, 0, 0), []byte{opRaw, typ, 0, 0, 0}))
	}
	return seeds
}
