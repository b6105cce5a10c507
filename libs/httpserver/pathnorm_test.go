package httpserver

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNormalizePath(t *testing.T) {
	cases := []struct{ in, canonical, decoded string }{
		{"/v1/jobs/abc", "/v1/jobs/abc", "/v1/jobs/abc"},
		{"/v1/%2e%2e/admin", "/admin", "/admin"},
		{"/v1/jobs/../../admin/v1", "/admin/v1", "/admin/v1"},
		{"/v1/./jobs/.", "/v1/jobs/", "/v1/jobs/"},
		{"//admin//v1", "/admin/v1", "/admin/v1"},
		{"/admin%2Fv1", "/admin%2Fv1", "/admin/v1"},
		{"/admin%2fv1", "/admin%2Fv1", "/admin/v1"},
		{"/v1/%7Euser/%41", "/v1/~user/A", "/v1/~user/A"},
		{"/v1/a%3Bb;c", "/v1/a;b;c", "/v1/a;b;c"},
		{"/v1/%E2%82%AC", "/v1/%E2%82%AC", "/v1/€"},
		{"/v1/a%2520b", "/v1/a%2520b", "/v1/a%20b"},
		{"/", "/", "/"},
		{"/..%2f", "/..%2F", "/../"},
		{"/v1/jobs/", "/v1/jobs/", "/v1/jobs/"},
		{"/v1/.%2E/x", "/x", "/x"},
	}
	for _, tc := range cases {
		c, d, err := NormalizePath(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.canonical, c, tc.in)
		assert.Equal(t, tc.decoded, d, tc.in)
	}
	for _, bad := range []string{"/..", "/v1/../../x", "/%2e%2e/admin", "v1/jobs", "/a%00b", "/a%0d%0aSet-Cookie:x", "/a%zz", "*"} {
		_, _, err := NormalizePath(bad)
		assert.Error(t, err, bad)
	}
}

// FuzzNormalizePath: whatever the input, the canonical form is a fixed
// point, holds no dot or empty segment, and decodes to the decoded form.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/v1/%2e%2e/admin", "/admin%2Fv1", "//a//b", "/a/./b/../c", "/%7e", "/a%2", "/.%2e/", "/€/x", "/a;b,c", "/%25%32%46"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		canonical, decoded, err := NormalizePath(in)
		if err != nil {
			return
		}
		again, dec2, err := NormalizePath(canonical)
		if err != nil || again != canonical || dec2 != decoded {
			t.Fatalf("%q -> %q is not a fixed point: %q %q %v", in, canonical, again, dec2, err)
		}
		if !strings.HasPrefix(canonical, "/") {
			t.Fatalf("%q -> %q is not absolute", in, canonical)
		}
		for _, seg := range strings.Split(canonical[1:], "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q -> %q keeps a dot segment", in, canonical)
			}
		}
		if strings.Contains(canonical[1:len(canonical)-min(1, len(canonical)-1)], "//") {
			t.Fatalf("%q -> %q keeps an empty segment", in, canonical)
		}
		u, err := url.PathUnescape(canonical)
		if err != nil || u != decoded {
			t.Fatalf("%q: canonical %q decodes to %q, not %q (%v)", in, canonical, u, decoded, err)
		}
	})
}
