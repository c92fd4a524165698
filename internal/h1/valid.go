package h1

import "golang.org/x/net/http/httpguts"

// Text is the byte sequences the validators take: a string, or a []byte
// still in a read buffer (so checking it costs no copy).
type Text interface{ ~string | ~[]byte }

// tokenByte marks tchar, the bytes of a token (RFC 9110 5.6.2). It is a
// read-only table, never written.
var tokenByte = [256]bool{
	'!': true, '#': true, '$': true, '%': true, '&': true, '\'': true,
	'*': true, '+': true, '-': true, '.': true, '^': true, '_': true,
	'`': true, '|': true, '~': true,
	'0': true, '1': true, '2': true, '3': true, '4': true,
	'5': true, '6': true, '7': true, '8': true, '9': true,
	'A': true, 'B': true, 'C': true, 'D': true, 'E': true, 'F': true, 'G': true,
	'H': true, 'I': true, 'J': true, 'K': true, 'L': true, 'M': true, 'N': true,
	'O': true, 'P': true, 'Q': true, 'R': true, 'S': true, 'T': true, 'U': true,
	'V': true, 'W': true, 'X': true, 'Y': true, 'Z': true,
	'a': true, 'b': true, 'c': true, 'd': true, 'e': true, 'f': true, 'g': true,
	'h': true, 'i': true, 'j': true, 'k': true, 'l': true, 'm': true, 'n': true,
	'o': true, 'p': true, 'q': true, 'r': true, 's': true, 't': true, 'u': true,
	'v': true, 'w': true, 'x': true, 'y': true, 'z': true,
}

// IsTokenByte reports whether c is a tchar (RFC 9110 5.6.2).
func IsTokenByte(c byte) bool { return tokenByte[c] }

// ValidToken reports whether s is a token: one or more tchar (RFC 9110
// 5.6.2). Methods (RFC 9110 9.1) and field names (RFC 9110 5.1) are tokens.
func ValidToken[T Text](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte[s[i]] {
			return false
		}
	}
	return true
}

// ValidMethod reports whether m is a valid request method: a token. The
// empty method, which net/http's client reads as GET, is the caller's
// business.
func ValidMethod[T Text](m T) bool { return ValidToken(m) }

// ValidFieldName reports whether name is a valid field name: a token. It
// refuses whitespace, so "Name : v" (RFC 9112 5.1) is refused too. As
// httpguts.ValidHeaderFieldName; case is not checked (HTTP/2's lowercase
// rule is the HTTP/2 code's).
func ValidFieldName[T Text](name T) bool { return ValidToken(name) }

// ValidFieldValue reports whether v may be a field value (RFC 9110 5.5):
// no control byte but HTAB, so no CR, LF or NUL; obs-text (0x80-0xFF) is
// allowed, as net/http allows it. Leading and trailing whitespace is the
// caller's to trim; this does not refuse it. As
// httpguts.ValidHeaderFieldValue.
func ValidFieldValue[T Text](v T) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// ValidHost reports whether h may be a Host field value or the authority
// of an absolute-form target (RFC 9110 7.2, RFC 9112 3.2): the same loose
// byte check as net/http's server (httpguts.ValidHostHeader), which it
// calls, so a fix to net/http's rule reaches Bulwark with x/net. The empty
// string is valid (an HTTP/1.0 client may send "Host:").
func ValidHost(h string) bool { return httpguts.ValidHostHeader(h) }
