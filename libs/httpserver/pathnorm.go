package httpserver

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/libs/problem"
)

// Errors NormalizePath returns.
var (
	errPathNotAbsolute = errors.New("the path must start with /")
	errPathAboveRoot   = errors.New("the path climbs above the root (a .. segment)")
	errPathControl     = errors.New("the path holds a control character")
	errPathEscape      = errors.New("the path holds an invalid %-escape")
)

// NormalizePath returns the canonical form of an escaped request path, in
// escaped and in decoded form: segments percent-decoded and re-escaped one
// way (so %7E and ~, or %2e and ., are the same segment), dot segments
// resolved (RFC 3986 §5.2.4, encoded ones included), runs of slashes
// merged, a trailing slash kept. An encoded slash (%2F) stays inside its
// segment as data: routing matches on the escaped form, so /admin%2Fv1 is
// one segment that no route has, never /admin/v1. Control characters
// (NUL, CR, LF, ...) are refused anywhere in the path.
func NormalizePath(escaped string) (canonical, decoded string, err error) {
	if !strings.HasPrefix(escaped, "/") {
		return "", "", errPathNotAbsolute
	}
	if isCanonical(escaped) {
		return escaped, escaped, nil
	}
	raw := strings.Split(escaped[1:], "/")
	segs := make([]string, 0, len(raw))
	for _, s := range raw {
		d, err := url.PathUnescape(s)
		if err != nil {
			return "", "", errPathEscape
		}
		for i := 0; i < len(d); i++ {
			if d[i] < 0x20 || d[i] == 0x7f {
				return "", "", errPathControl
			}
		}
		switch d {
		case "", ".":
			continue
		case "..":
			if len(segs) == 0 {
				return "", "", errPathAboveRoot
			}
			segs = segs[:len(segs)-1]
			continue
		}
		segs = append(segs, d)
	}
	last := raw[len(raw)-1]
	trailing := len(segs) > 0 && (last == "" || isDot(last))
	var esc, dec strings.Builder
	for _, d := range segs {
		esc.WriteByte('/')
		esc.WriteString(escapeSegment(d))
		dec.WriteByte('/')
		dec.WriteString(d)
	}
	if len(segs) == 0 || trailing {
		esc.WriteByte('/')
		dec.WriteByte('/')
	}
	return esc.String(), dec.String(), nil
}

func isDot(s string) bool {
	d, err := url.PathUnescape(s)
	return err == nil && (d == "." || d == "..")
}

// pchar reports whether c may appear unescaped in a canonical segment:
// RFC 3986's unreserved characters, sub-delims, ':' and '@'.
func pchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@", c) >= 0
}

// escapeSegment escapes every byte of a decoded segment that is not a
// pchar, in upper-case hex.
func escapeSegment(d string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(d); i++ {
		c := d[i]
		if pchar(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// isCanonical is the fast path: only pchars, no empty segment, no dot
// segment.
func isCanonical(p string) bool {
	prevSlash := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			if prevSlash && i > 0 {
				return false
			}
			prevSlash = true
			continue
		case c == '.':
			// "." or ".." as a whole segment.
			if prevSlash && (i+1 == len(p) || p[i+1] == '/' || (p[i+1] == '.' && (i+2 == len(p) || p[i+2] == '/'))) {
				return false
			}
		case !pchar(c):
			return false
		}
		prevSlash = false
	}
	return true
}

// normalizePathMiddleware rewrites the request path to its canonical form
// before routing, so that the route (and its policy) is chosen on the same
// path a handler sees, whatever encoding the client used.
func normalizePathMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		u := c.Request().URL
		escaped := u.EscapedPath()
		canonical, decoded, err := NormalizePath(escaped)
		if err != nil {
			if c.Request().Method == http.MethodOptions && u.Path == "*" {
				return next(c)
			}
			return problem.BadRequest.Newf("invalid request path: %v", err)
		}
		if canonical != escaped {
			u.Path = decoded
			if canonical == decoded {
				u.RawPath = ""
			} else {
				u.RawPath = canonical
			}
		}
		return next(c)
	}
}
