package syncroute

import (
	"net/url"
	"testing"

	"github.com/switchyard/switchyard/services/gateway/internal/routes"
)

// FuzzUpstreamURL: whatever values the path parameters take, the filled
// URL calls the template's scheme, host and port, and the template's
// path up to the first parameter; a value never adds a path segment or a
// query field.
func FuzzUpstreamURL(f *testing.F) {
	for _, seed := range [][2]string{
		{"x", "y"}, {"evil.example", "x"}, {"@evil.example", "/"}, {"//evil.example/", "?a=b"}, {"..", "."},
		{"%2F%2E%2E", "#frag"}, {"a/../../b", "\\evil"}, {"http://evil/", "\x00"}, {"[::1]:80", "user:pass@h"},
	} {
		f.Add(seed[0], seed[1])
	}
	templates := []string{
		"https://api.internal:8443/v1/{a}/items/{b}?fmt=json",
		"http://api.internal/{a}{b}",
		"http://api.internal/p?x={a}&y={b}",
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, tmpl := range templates {
			u := &upstreamTarget{spec: &routes.Upstream{URL: tmpl}}
			filled := u.url(&inbound{params: map[string]string{"a": a, "b": b}})
			got, err := url.Parse(filled)
			if err != nil {
				t.Fatalf("%q filled with %q, %q: %q does not parse: %v", tmpl, a, b, filled, err)
			}
			want, _ := url.Parse(tmpl)
			if got.Scheme != want.Scheme || got.Host != want.Host || got.User != nil {
				t.Fatalf("%q filled with %q, %q calls %s://%s (user %v)", tmpl, a, b, got.Scheme, got.Host, got.User)
			}
			if got.Fragment != "" {
				t.Fatalf("%q filled with %q, %q has a fragment %q", tmpl, a, b, got.Fragment)
			}
			// As many segments as the template, none of them a dot segment
			// the value made.
			if segs(got.EscapedPath()) != segs(want.EscapedPath()) {
				t.Fatalf("%q filled with %q, %q: path %q has another number of segments", tmpl, a, b, got.EscapedPath())
			}
			for _, s := range splitPath(got.EscapedPath()) {
				if s == "." || s == ".." {
					t.Fatalf("%q filled with %q, %q: path %q has a dot segment", tmpl, a, b, got.EscapedPath())
				}
			}
			if len(got.Query()) != len(want.Query()) {
				t.Fatalf("%q filled with %q, %q: query %q has other fields than %q", tmpl, a, b, got.RawQuery, want.RawQuery)
			}
		}
	})
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}

func segs(p string) int { return len(splitPath(p)) }
