package config

import (
	"strings"
	"testing"
)

// TestCORSOriginsAsBrowsersSend: an origin that a browser would never send
// as written (case, default port, slash, a "*" pattern) is refused with
// the spelling to write instead, since it could never match.
func TestCORSOriginsAsBrowsersSend(t *testing.T) {
	tests := []struct {
		origin  string
		wantErr string // "" = valid
	}{
		{"https://app.example.com", ""},
		{"http://localhost:8000", ""},
		{"http://127.0.0.1:5173", ""},
		{"https://[::1]:8443", ""},
		{"https://my_app.example.com", ""},
		{"https://xn--bcher-kva.example", ""},
		{"*", ""},
		{"https://App.Example.com", `browsers send this origin as "https://app.example.com" (host in lower case), so "https://App.Example.com" would never match: write "https://app.example.com"`},
		{"HTTPS://app.example.com", `browsers send this origin as "https://app.example.com" (scheme in lower case)`},
		{"https://b.example.com:443", `browsers send this origin as "https://b.example.com" (without the default port :443), so "https://b.example.com:443" would never match: write "https://b.example.com"`},
		{"http://b.example.com:80", `browsers send this origin as "http://b.example.com" (without the default port :80)`},
		{"https://b.example.com:0443", `browsers send this origin as "https://b.example.com" (without the default port :443)`},
		{"https://b.example.com:08443", `browsers send this origin as "https://b.example.com:8443" (port without leading zeros)`},
		{"https://b.example.com:", `browsers send this origin as "https://b.example.com" (without an empty port)`},
		{"https://app.example.com/", `browsers send this origin as "https://app.example.com" (without a trailing slash)`},
		{"https://B.example.com:443/", `browsers send this origin as "https://b.example.com" (host in lower case, without the default port :443, without a trailing slash)`},
		{"https://bücher.example", `browsers send this origin as "https://xn--bcher-kva.example" (host in its ASCII (punycode) form)`},
		{"https://[0:0::1]:8443", `browsers send this origin as "https://[::1]:8443" (IP address in its shortest form)`},
		{"https://*.example.com", `must be one origin, got "https://*.example.com": a "*" inside an origin is not a wildcard (browsers never send one); list each origin`},
		{"https://app.example.*", `a "*" inside an origin is not a wildcard`},
		{"https://app.example.com/app", `must be an origin: scheme, host and port only, with no path, query or user; browsers send "https://app.example.com", got "https://app.example.com/app"`},
		{"https://app.example.com?x", `with no path, query or user`},
		{"https://app.example.com#", `with no path, query or user`},
		{"https://b.example.com:99999", `port must be a number between 1 and 65535, got "99999"`},
		{"https://bad host.example", `must be an origin such as "https://app.example.com"`},
		{"app.example.com", `must be an origin such as "https://app.example.com"`},
		{"null", `must be an origin such as "https://app.example.com"`},
	}
	for _, tt := range tests {
		c := Default()
		c.CORS.Origins = []string{tt.origin}
		err := c.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("origins = [%q]: Validate = %v; want nil", tt.origin, err)
		case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), "cors.origins[0]: ") || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("origins = [%q]: Validate = %v;\nwant cors.origins[0]: …%q…", tt.origin, err, tt.wantErr)
		}
	}
}
