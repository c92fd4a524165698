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

// contentType is the Content-Type for name's extension, and for none or
// an unknown one application/octet-stream, as nginx's default_type: never
// sniffed from the bytes, which would make a user's upload holding HTML
// text/html, a stored XSS.
func contentType(name string) string {
	ext := strings.ToLower(path.Ext(name))
	if t, ok := webTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}

// hashed reports whether a file name carries a content hash, as build
// tools write them: a dot- or dash-separated part before the extension of
// 8 to 64 letters, digits or "_", with a digit and a lower-case letter,
// that is either
//   - lower-case hex whose letters and digits interleave (webpack's
//     app.3f2a9c1b.js), or of 12 characters or more (Django's
//     style.abcdef123456.css, webpack's 20), or
//   - of both cases, letters and digits interleaving, without four
//     lower-case letters in a row (Vite's index-BRfz3XyO.js).
//
// "Interleave" means at least two changes between a digit and a letter:
// a word then a number (README-Version2, photo-abc12345) is a name a
// person chose, and so are camel-case words (Setup-Win64Installer). A
// false "no" costs a revalidation on reload; a false "yes" keeps a
// changed file stale in browsers for the whole max-age.
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
	digit, lower, upper, hexOnly := false, false, false, true
	changes, lowerRun, longestLowerRun := 0, 0, 0
	for j, c := range []byte(part) {
		isDigit := c >= '0' && c <= '9'
		switch {
		case isDigit:
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
		if j > 0 && isDigit != (part[j-1] >= '0' && part[j-1] <= '9') {
			changes++
		}
		if c >= 'a' && c <= 'z' {
			lowerRun++
			longestLowerRun = max(longestLowerRun, lowerRun)
		} else {
			lowerRun = 0
		}
	}
	switch {
	case !digit || !lower:
		return false
	case hexOnly:
		return changes >= 2 || len(part) >= 12
	default:
		return upper && changes >= 2 && longestLowerRun < 4
	}
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
