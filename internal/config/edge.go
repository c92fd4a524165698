package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/idna"

	"bulwark/internal/h1"
)

// This file holds the edge sections of the second round (issue 19): what
// Bulwark answers or changes at the front door so the app never has to.

// DefaultCORSMaxAge is how long a browser may cache a preflight's answer.
const DefaultCORSMaxAge = 10 * time.Minute

// CORS is the [cors] table: cross-origin requests answered at the edge (the
// guide's CORSMiddleware). Empty Origins turns it off.
type CORS struct {
	// Origins are the allowed origins, each as browsers send it
	// ("https://app.example.com": lower case, no default port, no slash),
	// or "*" alone for any.
	Origins []string `toml:"origins"`
	// Methods are the methods a preflight may ask for; "*" allows any.
	Methods []string `toml:"methods"`
	// Headers are the request headers a preflight may ask for; "*" allows any.
	Headers []string `toml:"headers"`
	// Credentials lets the browser send cookies and read the answer
	// (Access-Control-Allow-Credentials: true).
	Credentials bool `toml:"credentials"`
	// MaxAge is how long a browser may cache a preflight's answer.
	MaxAge Duration `toml:"max_age"`
}

// defaultCORS is [cors] as Default() has it: off.
func defaultCORS() CORS {
	return CORS{
		Origins: []string{},
		Methods: []string{"GET", "POST"},
		Headers: []string{},
		MaxAge:  Duration(DefaultCORSMaxAge),
	}
}

func (c *Config) validateCORS(v *validator) {
	co := c.CORS
	for i, o := range co.Origins {
		key := fmt.Sprintf("cors.origins[%d]", i)
		if o == "*" {
			if co.Credentials {
				v.fail(key, errors.New(`"*" cannot be used with cors.credentials = true: browsers reject `+
					`a wildcard origin on credentialed requests; list the origins`))
			}
			continue
		}
		if err := checkOrigin(o); err != nil {
			v.fail(key, err)
		}
	}
	for i, m := range co.Methods {
		if !h1.ValidToken(m) {
			v.fail(fmt.Sprintf("cors.methods[%d]", i), fmt.Errorf("must be an HTTP method such as \"PUT\", got %q", m))
		}
	}
	for i, h := range co.Headers {
		if h != "*" && !h1.ValidToken(h) {
			v.fail(fmt.Sprintf("cors.headers[%d]", i), fmt.Errorf("must be a header name such as \"Authorization\", got %q", h))
		}
	}
	v.duration("cors.max_age", co.MaxAge, 0, 0)
}

// checkOrigin reports why o is not an origin as a browser sends it in the
// Origin header: scheme "://" host, then ":port" unless it is the scheme's
// default, in lower case, with nothing after. Origins are compared as
// strings, so any other spelling of an origin would never match, and
// nothing would say why: the error gives the spelling to write instead.
func checkOrigin(o string) error {
	if strings.Contains(o, "*") {
		// Subdomain patterns are not supported: the guide's CORSMiddleware
		// has none in allow_origins either, and a pattern trusts every
		// subdomain, including ones taken over or added later.
		return fmt.Errorf(`must be one origin, got %q: a "*" inside an origin is not a wildcard (browsers never send one); `+
			`list each origin ("https://app.example.com", "https://admin.example.com"), or write "*" alone for any origin`, o)
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf(`must be an origin such as "https://app.example.com" (scheme, host and port only), got %q`, o)
	}
	var why []string
	if !strings.HasPrefix(o, u.Scheme+"://") { // url.Parse lower-cases the scheme
		why = append(why, "scheme in lower case")
	}
	want, hostWhy, err := serializeOrigin(u)
	if err != nil {
		return fmt.Errorf("%w, got %q", err, o)
	}
	why = append(why, hostWhy...)
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || strings.Contains(o, "#") {
		return fmt.Errorf("must be an origin: scheme, host and port only, with no path, query or user; browsers send %q, got %q", want, o)
	}
	if u.Path == "/" {
		why = append(why, "without a trailing slash")
	}
	if want != o {
		if len(why) == 0 {
			why = append(why, "as browsers serialize it")
		}
		return fmt.Errorf("browsers send this origin as %q (%s), so %q would never match: write %q",
			want, strings.Join(why, ", "), o, want)
	}
	return nil
}

// serializeOrigin returns the origin of u (scheme http or https, host
// set) as browsers send it (RFC 6454 6.1, with the URL standard's host
// serializer), and what differs in the host and port as u spells them; or
// why they cannot be an origin's.
func serializeOrigin(u *url.URL) (origin string, why []string, err error) {
	rawHost, rawPort := u.Hostname(), u.Port()
	var host string
	if a, perr := netip.ParseAddr(rawHost); perr == nil {
		if a.Zone() != "" {
			return "", nil, errors.New("host must not have an IPv6 zone: browsers never send one")
		}
		host = a.String()
		if a.Is6() {
			host, rawHost = "["+host+"]", "["+rawHost+"]"
		}
		if host != rawHost {
			why = append(why, "IP address in its shortest form")
		}
	} else {
		host = strings.ToLower(rawHost)
		// Lookup fails on names browsers take (with "_"): those are
		// left as they are.
		if ascii, ierr := idna.Lookup.ToASCII(rawHost); ierr == nil && ascii != host {
			host = ascii
			why = append(why, "host in its ASCII (punycode) form")
		} else if host != rawHost {
			why = append(why, "host in lower case")
		}
		if !validHost(host) {
			return "", nil, errors.New("host must be a host name such as app.example.com, or an IP address")
		}
	}
	port := ""
	switch n, perr := strconv.Atoi(rawPort); {
	case strings.HasSuffix(u.Host, ":"):
		why = append(why, "without an empty port")
	case rawPort == "":
	case perr != nil || n < 1 || n > 65535:
		return "", nil, fmt.Errorf("port must be a number between 1 and 65535, got %q", rawPort)
	case u.Scheme == "https" && n == 443, u.Scheme == "http" && n == 80:
		why = append(why, "without the default port :"+strconv.Itoa(n))
	default:
		port = ":" + strconv.Itoa(n)
		if port != ":"+rawPort {
			why = append(why, "port without leading zeros")
		}
	}
	return u.Scheme + "://" + host + port, why, nil
}

// Static is one [[static]] table: a URL prefix served from a directory
// without the app (nginx location + alias).
type Static struct {
	// Path is the URL prefix, starting and ending with "/".
	Path string `toml:"path"`
	// Dir is the directory served under Path.
	Dir string `toml:"dir"`
	// Cache is the Cache-Control max-age; 0 sends no-cache (revalidate
	// every time). Names with a content hash also get "immutable".
	Cache Duration `toml:"cache"`
}

func (c *Config) validateStatic(v *validator) {
	seen := map[string]bool{}
	for i, s := range c.Static {
		key := fmt.Sprintf("static[%d]", i)
		switch {
		case !strings.HasPrefix(s.Path, "/") || !strings.HasSuffix(s.Path, "/"):
			v.fail(key+".path", fmt.Errorf(`must start and end with "/", such as "/static/", got %q`, s.Path))
		case strings.Contains(s.Path, "/./") || strings.Contains(s.Path, "/../") || strings.Contains(s.Path, "//"):
			v.fail(key+".path", fmt.Errorf("must be a clean path, got %q", s.Path))
		case seen[s.Path]:
			v.fail(key+".path", fmt.Errorf("%q is served by an earlier [[static]] already", s.Path))
		}
		seen[s.Path] = true
		if s.Dir == "" {
			v.fail(key+".dir", errors.New("must be set: the directory to serve"))
		}
		v.duration(key+".cache", s.Cache, 0, 0)
	}
}

// DefaultCompressMinSize is the smallest app answer compressed.
const DefaultCompressMinSize = 1 * KiB

// Compress is the [compress] table: compression of the app's answers.
type Compress struct {
	// Types are the media types compressed ("text/*" matches every text
	// type); empty turns compression off.
	Types []string `toml:"types"`
	// MinSize is the smallest answer compressed.
	MinSize ByteSize `toml:"min_size"`
}

// defaultCompress is [compress] as Default() has it: on for text, JSON,
// JavaScript and SVG.
func defaultCompress() Compress {
	return Compress{
		Types:   []string{"text/*", "application/json", "application/javascript", "image/svg+xml"},
		MinSize: DefaultCompressMinSize,
	}
}

func (c *Config) validateCompress(v *validator) {
	for i, t := range c.Compress.Types {
		typ, sub, ok := strings.Cut(t, "/")
		if !ok || !h1.ValidToken(typ) || typ == "*" || (sub != "*" && !h1.ValidToken(sub)) {
			v.fail(fmt.Sprintf("compress.types[%d]", i), fmt.Errorf(`must be a media type such as "application/json" or "text/*", got %q`, t))
		}
	}
	v.size("compress.min_size", c.Compress.MinSize, 0, 1*MiB)
}

// Route is one [[route]] table: limits for the requests under a path
// prefix (nginx location); the longest matching prefix wins. A key left
// out takes the global value.
type Route struct {
	// Path is the URL path prefix, starting with "/".
	Path string `toml:"path"`
	// MaxBody overrides limits.max_body.
	MaxBody *ByteSize `toml:"max_body"`
	// BodyBuffer overrides limits.body_buffer.
	BodyBuffer *ByteSize `toml:"body_buffer"`
	// BufferRequests overrides limits.buffer_requests.
	BufferRequests *bool `toml:"buffer_requests"`
	// BufferResponses overrides limits.buffer_responses.
	BufferResponses *bool `toml:"buffer_responses"`
	// ReadTimeout overrides upstream.read_timeout.
	ReadTimeout *Duration `toml:"read_timeout"`
	// SendTimeout overrides upstream.send_timeout.
	SendTimeout *Duration `toml:"send_timeout"`
	// RatePerIP overrides limits.rate_per_ip with a table of its own:
	// requests under Path count against it instead ("off": no limit).
	RatePerIP *string `toml:"rate_per_ip"`
}

// Effective is a route's rules with the global values filled in.
type Effective struct {
	Path            string
	MaxBody         ByteSize
	BodyBuffer      ByteSize
	BufferRequests  bool
	BufferResponses bool
	ReadTimeout     Duration
	SendTimeout     Duration
	// RatePerIP is the route's own rate_per_ip, "" when it counts against
	// the global one.
	RatePerIP string
}

// Effective returns the route's rules with c's global values for the keys
// the route leaves out.
func (r Route) Effective(c *Config) Effective {
	e := Effective{
		Path:            r.Path,
		MaxBody:         c.Limits.MaxBody,
		BodyBuffer:      c.Limits.BodyBuffer,
		BufferRequests:  c.Limits.BufferRequests,
		BufferResponses: c.Limits.BufferResponses,
		ReadTimeout:     c.Upstream.ReadTimeout,
		SendTimeout:     c.Upstream.SendTimeout,
	}
	if r.MaxBody != nil {
		e.MaxBody = *r.MaxBody
	}
	if r.BodyBuffer != nil {
		e.BodyBuffer = *r.BodyBuffer
	}
	if r.BufferRequests != nil {
		e.BufferRequests = *r.BufferRequests
	}
	if r.BufferResponses != nil {
		e.BufferResponses = *r.BufferResponses
	}
	if r.ReadTimeout != nil {
		e.ReadTimeout = *r.ReadTimeout
	}
	if r.SendTimeout != nil {
		e.SendTimeout = *r.SendTimeout
	}
	if r.RatePerIP != nil {
		e.RatePerIP = *r.RatePerIP
	}
	return e
}

func (e Effective) String() string {
	rate := "global"
	if e.RatePerIP != "" {
		rate = fmt.Sprintf("%q (own table)", e.RatePerIP)
	}
	return fmt.Sprintf("max_body = %s, body_buffer = %s, buffer_requests = %t, buffer_responses = %t, read_timeout = %s, send_timeout = %s, rate_per_ip = %s",
		e.MaxBody, e.BodyBuffer, e.BufferRequests, e.BufferResponses, e.ReadTimeout, e.SendTimeout, rate)
}

func (c *Config) validateRoutes(v *validator) {
	seen := map[string]bool{}
	for i, r := range c.Route {
		key := fmt.Sprintf("route[%d]", i)
		switch {
		case !strings.HasPrefix(r.Path, "/"):
			v.fail(key+".path", fmt.Errorf(`must be a path prefix starting with "/", such as "/api/upload/", got %q`, r.Path))
		case seen[r.Path]:
			v.fail(key+".path", fmt.Errorf("%q has an earlier [[route]] already", r.Path))
		}
		seen[r.Path] = true
		if r.MaxBody != nil {
			v.size(key+".max_body", *r.MaxBody, 1, 0)
		}
		if r.BodyBuffer != nil {
			v.size(key+".body_buffer", *r.BodyBuffer, 1*KiB, 0)
		}
		if r.ReadTimeout != nil {
			v.positive(key+".read_timeout", *r.ReadTimeout)
		}
		if r.SendTimeout != nil {
			v.positive(key+".send_timeout", *r.SendTimeout)
		}
		if r.RatePerIP != nil {
			if _, _, err := ParseRate(*r.RatePerIP); err != nil {
				v.fail(key+".rate_per_ip", err)
			} else if strings.TrimSpace(*r.RatePerIP) == "" {
				v.fail(key+".rate_per_ip", fmt.Errorf(`%w, got ""`, errRateSyntax))
			}
		}
	}
}
