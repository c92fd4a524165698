package static

import (
	"cmp"
	"io/fs"
	"mime"
	"os"
	"path"
	"slices"
	"strings"

	"bulwark/internal/negotiate"
)

// webTypes are the Content-Types of the files a web app ships, fixed here
// so that they do not depend on the machine's /etc/mime.types.
var webTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".htm":         "text/html; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".mjs":         "text/javascript; charset=utf-8",
	".json":        "application/json",
	".map":         "application/json",
	".webmanifest": "application/manifest+json",
	".txt":         "text/plain; charset=utf-8",
	".xml":         "application/xml",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".jpg":         "image/jpeg",
	".jpeg":        "image/jpeg",
	".gif":         "image/gif",
	".webp":        "image/webp",
	".avif":        "image/avif",
	".ico":         "image/vnd.microsoft.icon",
	".woff":        "font/woff",
	".woff2":       "font/woff2",
	".ttf":         "font/ttf",
	".otf":         "font/otf",
	".wasm":        "application/wasm",
	".pdf":         "application/pdf",
	".mp4":         "video/mp4",
	".webm":        "video/webm",
	".mp3":         "audio/mpeg",
	".zip":         "application/zip",
	".gz":          "application/gzip",
}

// contentType is the Content-Type for name's extension, "" when unknown
// (http.ServeContent then sniffs the first bytes).
func contentType(name string) string {
	ext := strings.ToLower(path.Ext(name))
	if t, ok := webTypes[ext]; ok {
		return t
	}
	return mime.TypeByExtension(ext)
}

// hashed reports whether a file name carries a content hash, as bundlers
// write them: a dot- or dash-separated part before the extension of 8 to
// 64 characters that is lower-case hex with a digit and a letter
// (app.3f2a9c1b.js), or letters and digits with both cases and a digit
// (Vite's index-BRfz3XyO.js).
func hashed(name string) bool {
	base := path.Base(name)
	stem := strings.TrimSuffix(base, path.Ext(base))
	i := strings.LastIndexAny(stem, ".-")
	if i < 0 {
		return false
	}
	part := stem[i+1:]
	if len(part) < 8 || len(part) > 64 {
		return false
	}
	var digit, lower, upper, hexOnly = false, false, false, true
	for _, c := range []byte(part) {
		switch {
		case c >= '0' && c <= '9':
			digit = true
		case c >= 'a' && c <= 'f':
			lower = true
		case c >= 'g' && c <= 'z':
			lower, hexOnly = true, false
		case c >= 'A' && c <= 'Z' || c == '_':
			upper, hexOnly = true, false
		default:
			return false
		}
	}
	return digit && lower && (hexOnly || upper)
}

// variant is a precompressed sibling's coding and file suffix.
type variant struct{ coding, ext string }

// variants in the order tried when the client weighs them equally:
// smallest first.
var variants = [...]variant{{"br", ".br"}, {"zstd", ".zst"}, {"gzip", ".gz"}}

// variantCodings are the codings of variants, in its order, for one read
// of Accept-Encoding (negotiate.EncodingQs).
var variantCodings = [len(variants)]string{"br", "zstd", "gzip"}

// precompressed opens the sibling of name in the coding the client weighs
// highest among those it accepts and that exist as regular files; equal
// weights go by the order of variants.
func precompressed(root *os.Root, name, acceptEncoding string) (variant, *os.File, fs.FileInfo, bool) {
	if acceptEncoding == "" {
		return variant{}, nil, nil, false
	}
	type cand struct {
		v variant
		q float64
	}
	var q [len(variants)]float64
	negotiate.EncodingQs(acceptEncoding, variantCodings[:], q[:])
	var cands []cand
	for i, v := range variants {
		if q[i] > 0 {
			cands = append(cands, cand{v, q[i]})
		}
	}
	slices.SortStableFunc(cands, func(a, b cand) int { return cmp.Compare(b.q, a.q) })
	for _, c := range cands {
		if f, fi, err := openRegular(root, name+c.v.ext); err == nil {
			return c.v, f, fi, true
		}
	}
	return variant{}, nil, nil, false
}
