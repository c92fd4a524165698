// Package h1 is the HTTP/1.1 wire format that Bulwark's server (package
// front) and its client to the app (package proxy) share, so that each
// rule is written once. It reads and writes heads, decides how bodies are
// delimited, and codes chunked bodies; connections, timeouts, pools and
// the body readers' lifetimes are the callers'.
//
// What it implements, by file:
//
//   - valid.go: tokens (RFC 9110 5.6.2), methods (9.1), field names (5.1)
//     and values (5.5), Host (7.2).
//   - request.go: reading a request head (RFC 9112 2.2: CRLF or bare LF,
//     empty lines before the request line skipped), the request line (3)
//     and target forms (3.2; absolute form wins over Host, 3.2.2), field
//     lines (5; OWS trimmed as 9110 5.6.3 says), Host (3.2).
//   - response.go: reading a response head or trailer section, the status
//     line (RFC 9112 4), field lines (5).
//   - framing.go: the body's length (RFC 9112 6.1-6.3) for requests and
//     answers, received and sent; persistence (9.3); Upgrade (RFC 9110
//     7.8).
//   - chunked.go: the chunked coding (RFC 9112 7.1) and its trailer
//     section (7.1.2). Decoding is net/http's own decoder.
//   - write.go: request and status lines and field lines.
//
// The validators match x/net's httpguts byte for byte (a test checks every
// byte), Host validation and chunk decoding are net/http's own code, so
// their fixes reach Bulwark with Go and x/net. Elsewhere it deliberately
// differs from net/http, always by refusing more (docs/protocol.md keeps
// the tables, and the differential fuzz tests FuzzParseHead,
// FuzzRequestFraming, FuzzChunkedBody and FuzzReadResponse fail on any
// difference not listed):
//
// Requests received (a server refuses with a *HeadError):
//   - Content-Length with Transfer-Encoding: 400, where net/http drops the
//     Content-Length (RFC 9112 6.1 allows either).
//   - Transfer-Encoding in HTTP/1.0, or other than exactly one "chunked":
//     400.
//   - a Content-Length list of equal values ("3, 3"): read as one, where
//     net/http refuses it (RFC 9112 6.3).
//   - CONNECT: 405; obs-fold, whitespace before a colon, a bare CR in the
//     request line, a target not in origin, absolute or asterisk form, a
//     missing or repeated Host, a version other than 1.0 or 1.1: refused,
//     where net/http accepts some.
//   - empty lines before the request line: skipped (RFC 9112 2.2), where
//     net/http refuses them.
//   - a trailer line not ended by CRLF: the body fails, where net/http
//     reads it (golang/go#81143). SkipTrailer reads no trailer fields.
//
// Answers received (FrameResponse, ParseResponseHead, ReadTrailer):
//   - Content-Length with Transfer-Encoding, a coding other than chunked
//     in HTTP/1.1, a protocol other than HTTP/1.x, a status code with a
//     sign or below 100, whitespace before a colon (RFC 9112 5.1), obs-fold
//     (5.2): refused, where net/http accepts them.
//   - a trailer line not ended by CRLF, or faulty as a head's would be: the
//     body fails.
//
// Requests sent (WriteRequestHead): no default User-Agent; a control byte
// in the target is percent-encoded where net/http refuses the request.
//
// Answers sent (WriteHeaderLines): a field value with a control byte is
// left out, where net/http's server turns CR and LF into spaces.
package h1
