package h1

import (
	"testing"

	"golang.org/x/net/http/httpguts"
)

// TestValidMatchesHTTPGuts checks every single byte, and the byte in the
// middle of a name or value, against x/net's httpguts, which net/http uses:
// Bulwark's table must refuse and accept exactly what net/http does.
func TestValidMatchesHTTPGuts(t *testing.T) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		if got, want := IsTokenByte(b), httpguts.IsTokenRune(rune(b)); got != want {
			t.Errorf("IsTokenByte(%#x) = %v, want %v", b, got, want)
		}
		for _, s := range []string{string([]byte{b}), "X" + string([]byte{b}) + "y"} {
			if got, want := ValidFieldName(s), httpguts.ValidHeaderFieldName(s); got != want {
				t.Errorf("ValidFieldName(%q) = %v, want %v", s, got, want)
			}
			if got, want := ValidFieldName([]byte(s)), httpguts.ValidHeaderFieldName(s); got != want {
				t.Errorf("ValidFieldName([]byte(%q)) = %v, want %v", s, got, want)
			}
			if got, want := ValidFieldValue(s), httpguts.ValidHeaderFieldValue(s); got != want {
				t.Errorf("ValidFieldValue(%q) = %v, want %v", s, got, want)
			}
			if got, want := ValidFieldValue([]byte(s)), httpguts.ValidHeaderFieldValue(s); got != want {
				t.Errorf("ValidFieldValue([]byte(%q)) = %v, want %v", s, got, want)
			}
		}
	}
}

func TestValid(t *testing.T) {
	tests := []struct {
		name string
		f    func(string) bool
		in   string
		want bool
	}{
		{"method", ValidMethod[string], "GET", true},
		{"method", ValidMethod[string], "M-SEARCH", true},
		{"method", ValidMethod[string], "", false},
		{"method", ValidMethod[string], "GE T", false},
		{"method", ValidMethod[string], "GET\x00", false},
		{"method", ValidMethod[string], "G\u00c9T", false},
		{"name", ValidFieldName[string], "Content-Length", true},
		{"name", ValidFieldName[string], "Content-Length ", false}, // RFC 9112 5.1
		{"name", ValidFieldName[string], "", false},
		{"name", ValidFieldName[string], "a:b", false},
		{"value", ValidFieldValue[string], "", true},
		{"value", ValidFieldValue[string], "a\tb", true},
		{"value", ValidFieldValue[string], "caf\xc3\xa9", true}, // obs-text
		{"value", ValidFieldValue[string], "a\rb", false},
		{"value", ValidFieldValue[string], "\rchunked", false}, // CVE-2022-1705
		{"value", ValidFieldValue[string], "a\nb", false},
		{"value", ValidFieldValue[string], "a\x00b", false},
		{"value", ValidFieldValue[string], "a\x7fb", false},
		{"host", ValidHost, "example.com:443", true},
		{"host", ValidHost, "[::1]:8080", true},
		{"host", ValidHost, "", true},
		{"host", ValidHost, "a b", false},
		{"host", ValidHost, "a/b", false},
		{"host", ValidHost, "a\x00", false},
	}
	for _, tt := range tests {
		if got := tt.f(tt.in); got != tt.want {
			t.Errorf("%s %q: got %v, want %v", tt.name, tt.in, got, tt.want)
		}
	}
}
