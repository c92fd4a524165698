package h2

import (
	"encoding/binary"
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// FuzzH2VerdictMatchesXNet sends the frames of an h2Program (FuzzH2Frames)
// to Bulwark's HTTP/2 server and to x/net's, configured alike (stream
// limit, header limit, windows, frame size), and compares their verdict on
// the connection: both end it with a connection error (a GOAWAY with an
// error code), or neither does. The code itself is not compared: RFC 9113
// often leaves the choice open (PROTOCOL_ERROR or a more specific one),
// and the two differ on purpose where listed in h2VerdictDifference.
//
// The list is not complete yet: a few minutes of fuzzing still finds
// differences to classify (for example the programs "72X022000000000001200"
// and "\x00\x00\x01\x00\x01\x00\x00\x00\x01\x01\x00\x02\x00\x00\x007A00200000000"),
// so this target runs on its seeds in go test but not in scripts/test.sh's
// fuzz step. Each difference found so far was either an RFC 9113 MUST that
// Bulwark keeps and x/net does not, or a Bulwark bug now reported
// (TestH2NoFramesAfterReset; frames on even stream IDs).
func FuzzH2VerdictMatchesXNet(f *testing.F) {
	for _, s := range h2Seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		compareH2Verdicts(t, prog)
	})
}

func compareH2Verdicts(t *testing.T, prog []byte) {
	in := h2Frames(prog)
	var n h2FuzzCounters
	opts := Options{
		Handler:              h2FuzzHandler(&n),
		MaxHeaderBytes:       1024,
		MaxConcurrentStreams: 3,
		BodyReadTimeout:      2 * time.Second,
		WriteTimeout:         5 * time.Second,
		ReadHeaderTimeout:    5 * time.Second,
	}
	srv := NewServer(opts)
	ours := driveH2(t, func(c net.Conn) { srv.ServeConn(c, nil) }, in)

	var xn h2FuzzCounters
	xs := &http2.Server{
		MaxConcurrentStreams:         uint32(opts.MaxConcurrentStreams),
		MaxReadFrameSize:             h2FrameSize,
		MaxUploadBufferPerConnection: h2ConnWindow,
		MaxUploadBufferPerStream:     h2StreamWindow,
		IdleTimeout:                  5 * time.Second,
	}
	base := &http.Server{Handler: h2FuzzHandler(&xn), MaxHeaderBytes: opts.MaxHeaderBytes, ErrorLog: quietLog()}
	theirs := driveH2(t, func(c net.Conn) { xs.ServeConn(c, &http2.ServeConnOpts{Handler: base.Handler, BaseConfig: base}) }, in)

	oursErr, theirsErr := ours > 0, theirs > 0
	if oursErr == theirsErr {
		return
	}
	if why := h2VerdictDifference(in, ours, theirs); why != "" {
		return
	}
	t.Fatalf("connection verdict: Bulwark %s, x/net %s (program %x)", verdictString(ours), verdictString(theirs), prog)
}

func verdictString(code int) string {
	if code < 0 {
		return "no GOAWAY"
	}
	return "GOAWAY " + http2.ErrCode(code).String()
}

// h2VerdictDifference names the deliberate difference behind differing
// verdicts on the frames in, or returns "".
//
//	| frames                                  | x/net                     | Bulwark                        |
//	|-----------------------------------------|---------------------------|--------------------------------|
//	| a field longer than the header limit    | COMPRESSION_ERROR (its    | decodes up to 4x the limit and |
//	|                                         | HPACK string limit)       | answers 431; the connection    |
//	|                                         |                           | lives (TestH2HeaderTooLarge)   |
//	| HEADERS on a stream the client reset    | PROTOCOL_ERROR (stream ID | a stream error STREAM_CLOSED   |
//	| (its ID not above the last one opened)  | went down)                | while its handler runs (RFC    |
//	|                                         |                           | 9113 5.1 MUST), a connection   |
//	|                                         |                           | error STREAM_CLOSED after      |
//	| frames on a stream whose HEADERS was    | the stream stays idle: a  | the HEADERS opened the stream  |
//	| refused (depends on itself, malformed)  | new HEADERS is accepted,  | (RFC 9113 5.1.1), reset at     |
//	|                                         | DATA is PROTOCOL_ERROR    | once: it is closed             |
//	| WINDOW_UPDATE, RST_STREAM or DATA on an | ignored (WINDOW_UPDATE),  | PROTOCOL_ERROR (RFC 9113 5.1,  |
//	| idle stream                             | or the same               | as h2spec checks)              |
//	| PRIORITY not 5 bytes long on a stream   | FRAME_SIZE_ERROR on the   | a stream error FRAME_SIZE_ERROR|
//	|                                         | connection                | (RFC 9113 6.3 MUST)            |
//	| a faulty frame after the client's       | none: x/net answers the   | the connection error the frame |
//	| GOAWAY                                  | GOAWAY with its own and   | calls for                      |
//	|                                         | ignores new streams       |                                |
//	| DATA, WINDOW_UPDATE or RST_STREAM on an | PROTOCOL_ERROR: the       | KNOWN DEVIATION (reported):    |
//	| even stream ID below the highest client | stream is idle (no push)  | only IDs above the highest one |
//	| stream ID                               |                           | opened count as idle, so a     |
//	|                                         |                           | stream error or nothing        |
//	| HEADERS on an even stream ID with a     | a stream error (its field | PROTOCOL_ERROR on the          |
//	| malformed field                         | check comes first)        | connection (RFC 9113 5.1.1)    |
//	| a setting twice in one SETTINGS frame   | PROTOCOL_ERROR            | applied in order (RFC 9113     |
//	|                                         |                           | 6.5.3)                         |
func h2VerdictDifference(in []byte, ours, theirs int) string {
	sc := scanFrames(in)
	// A GOAWAY with NO_ERROR (x/net answers the client's GOAWAY with
	// one) is no verdict against the client.
	ours, theirs = max(ours, -1), max(theirs, -1)
	if ours == 0 {
		ours = -1
	}
	if theirs == 0 {
		theirs = -1
	}
	switch {
	case ours < 0 && theirs == int(http2.ErrCodeCompression):
		return "a field over the header limit: 431, not COMPRESSION_ERROR"
	case ours < 0 && theirs == int(http2.ErrCodeProtocol) && sc.reopens:
		return "HEADERS on a stream the client reset: a stream error while its handler runs"
	case ours == int(http2.ErrCodeStreamClosed) && theirs < 0 && sc.reopens:
		return "HEADERS on a stream whose HEADERS was refused: opened (and closed) for Bulwark, idle for x/net"
	case ours < 0 && theirs == int(http2.ErrCodeFrameSize) && sc.badPriority:
		return "a PRIORITY frame not 5 bytes long: a stream error (RFC 9113 6.3)"
	case ours > 0 && theirs < 0 && sc.goAway:
		return "after the client's GOAWAY x/net drains and ignores new streams; Bulwark still judges every frame"
	case ours < 0 && theirs == int(http2.ErrCodeProtocol) && sc.evenStream:
		// KNOWN, reported: a minor deviation of Bulwark's.
		return "a frame on an even (server) stream ID below the last client stream: a stream error, not PROTOCOL_ERROR"
	case ours == int(http2.ErrCodeProtocol) && theirs < 0 && sc.evenHeaders:
		return "HEADERS on an even stream ID: PROTOCOL_ERROR (RFC 9113 5.1.1) even when the block is malformed"
	case sc.selfDep:
		return "a stream refused for depending on itself: opened (and closed) for Bulwark, idle for x/net"
	case ours == int(http2.ErrCodeProtocol) && theirs < 0 && sc.idleFrame:
		return "a frame on an idle stream: PROTOCOL_ERROR (RFC 9113 5.1)"
	case ours < 0 && theirs == int(http2.ErrCodeProtocol) && sc.dupSetting:
		return "a setting repeated in one frame: applied in order"
	}
	return ""
}

// frameScan is what scanFrames found in a client's frames.
type frameScan struct {
	reopens     bool // HEADERS on a stream ID not above one opened before
	idleFrame   bool // WINDOW_UPDATE, RST_STREAM or DATA on a stream not opened yet
	dupSetting  bool // a SETTINGS frame names a setting twice
	selfDep     bool // a HEADERS frame's stream depends on itself
	badPriority bool // a PRIORITY frame on a stream, not 5 bytes long
	goAway      bool // the client sent GOAWAY
	evenStream  bool // DATA, WINDOW_UPDATE or RST_STREAM on an even stream ID
	evenHeaders bool // HEADERS on an even stream ID
}

// scanFrames reads the frame headers of in, after the client preface.
func scanFrames(in []byte) frameScan {
	var sc frameScan
	var max uint32
	p := in[len(http2.ClientPreface):]
	for len(p) >= 9 {
		length := int(p[0])<<16 | int(p[1])<<8 | int(p[2])
		typ := http2.FrameType(p[3])
		id := binary.BigEndian.Uint32(p[5:9]) & (1<<31 - 1)
		switch typ {
		case http2.FrameHeaders:
			sc.evenHeaders = sc.evenHeaders || id%2 == 0
			if p[4]&0x20 != 0 && length >= 5 {
				q := p[9:min(9+length, len(p))]
				if p[4]&0x8 != 0 && len(q) > 0 {
					q = q[1:] // the pad length
				}
				if len(q) >= 4 && binary.BigEndian.Uint32(q)&(1<<31-1) == id {
					sc.selfDep = true
				}
			}
			if id <= max {
				sc.reopens = true
			}
			max = id
		case http2.FrameWindowUpdate, http2.FrameRSTStream, http2.FrameData:
			if id > max {
				sc.idleFrame = true
			}
			if id != 0 && id%2 == 0 {
				sc.evenStream = true
			}
		case http2.FrameGoAway:
			sc.goAway = true
		case http2.FramePriority:
			sc.badPriority = sc.badPriority || id != 0 && length != 5
		case http2.FrameSettings:
			seen := map[uint16]bool{}
			for q := p[9:min(9+length, len(p))]; len(q) >= 6; q = q[6:] {
				k := binary.BigEndian.Uint16(q)
				sc.dupSetting = sc.dupSetting || seen[k]
				seen[k] = true
			}
		}
		p = p[min(9+length, len(p)):]
	}
	return sc
}

// quietLog keeps x/net's connection errors out of the test output.
func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }
