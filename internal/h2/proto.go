package h2

import (
	"errors"
	"fmt"
)

// HTTP/2 frame types, flags, settings and error codes (RFC 9113).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	settingHeaderTableSize      = 0x1
	settingEnablePush           = 0x2
	settingMaxConcurrentStreams = 0x3
	settingInitialWindowSize    = 0x4
	settingMaxFrameSize         = 0x5
	settingMaxHeaderListSize    = 0x6

	errNo              = 0x0
	errProtocol        = 0x1
	errInternal        = 0x2
	errFlowControl     = 0x3
	errStreamClosed    = 0x5
	errFrameSize       = 0x6
	errRefusedStream   = 0x7
	errCancel          = 0x8
	errCompression     = 0x9
	errEnhanceYourCalm = 0xb

	// h2Preface is what every client connection starts with.
	h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	// h2FrameSize is the largest frame read or written: HTTP/2's minimum
	// maximum. Larger frames only cost memory on a small server.
	h2FrameSize = 16 << 10
	// h2StreamWindow and h2ConnWindow bound the request body bytes a client
	// may send ahead of the handler reading them, per stream and in all.
	h2StreamWindow = 256 << 10
	h2ConnWindow   = 1 << 20
	// h2DefaultWindow is the window both sides start with (RFC 9113 6.9.2).
	h2DefaultWindow = 65535
	h2MaxWindow     = 1<<31 - 1
	// h2TableSize is the HPACK dynamic table the client may use for the
	// headers it sends (the protocol default). Answers are encoded without
	// a dynamic table, as nginx does: it would cost 4 KiB per connection.
	h2TableSize = 4096
	// h2RecentResets is how many streams this side reset are remembered, so
	// that frames the client sent before it saw the reset are ignored.
	h2RecentResets = 4
)

// h2ConnError ends the connection with a GOAWAY carrying code.
type h2ConnError struct {
	code   uint32
	reason string
}

func (e h2ConnError) Error() string {
	return fmt.Sprintf("http2 connection error %d: %s", e.code, e.reason)
}

// h2StreamError ends one stream with a RST_STREAM carrying code.
type h2StreamError struct {
	id     uint32
	code   uint32
	reason string
}

func (e h2StreamError) Error() string {
	return fmt.Sprintf("http2 stream %d error %d: %s", e.id, e.code, e.reason)
}

// errStreamReset is what a handler's reads and writes return once its
// stream is over: the client reset it or the connection closed.
var errStreamReset = errors.New("http2: stream closed")
