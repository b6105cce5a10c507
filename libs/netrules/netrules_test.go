package netrules

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePrefixList(t *testing.T) {
	l, err := ParsePrefixList("10.0.0.0/8, 2001:db8::/32\n192.0.2.7 ::ffff:198.51.100.0/120")
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.0/8,2001:db8::/32,192.0.2.7/32,198.51.100.0/24", l.String())

	for _, bad := range []string{"10.1.2.3/8", "300.1.1.1", "10.0.0.0/33", "fe80::1%eth0", "::ffff:1.2.3.4/64", "example.com", "1.2.3.4/"} {
		_, err := ParsePrefixList(bad)
		assert.Error(t, err, bad)
	}
	empty, err := ParsePrefixList("  ,, ")
	require.NoError(t, err)
	assert.Equal(t, 0, empty.Len())
}

func TestContainsUnmaps(t *testing.T) {
	l, err := ParsePrefixList("10.0.0.0/8,2001:db8::/32")
	require.NoError(t, err)
	for addr, want := range map[string]bool{
		"10.1.2.3": true, "::ffff:10.1.2.3": true, "11.0.0.1": false,
		"2001:db8::1": true, "2001:db9::1": false, "::ffff:11.0.0.1": false,
	} {
		assert.Equal(t, want, l.Contains(netip.MustParseAddr(addr)), addr)
	}
	assert.False(t, l.Contains(netip.Addr{}))
}

func TestRules(t *testing.T) {
	allow, _ := ParsePrefixList("10.0.0.0/8")
	deny, _ := ParsePrefixList("10.6.6.0/24")
	r := Rules{Allow: allow, Deny: deny}
	assert.True(t, r.Permits(netip.MustParseAddr("10.1.1.1")))
	assert.False(t, r.Permits(netip.MustParseAddr("10.6.6.6")), "deny wins inside allow")
	assert.False(t, r.Permits(netip.MustParseAddr("192.0.2.1")), "outside a non-empty allow list")
	assert.True(t, Rules{Deny: deny}.Permits(netip.MustParseAddr("192.0.2.1")))
	assert.True(t, Rules{}.Empty())
}

func request(remote string, header string, values ...string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = remote
	for _, v := range values {
		r.Header.Add(header, v)
	}
	return r
}

func TestClientIP(t *testing.T) {
	trusted, err := ParsePrefixList("10.0.0.0/8, fd00::/8")
	require.NoError(t, err)
	xff := ClientIP{Trusted: trusted}
	fwd := ClientIP{Trusted: trusted, Header: HeaderForwarded}
	cases := []struct {
		name    string
		c       ClientIP
		remote  string
		values  []string
		want    string
		trusted bool
	}{
		{"untrusted peer's header is ignored", xff, "203.0.113.9:5000", []string{"198.51.100.1"}, "203.0.113.9", false},
		{"trusted peer: rightmost untrusted", xff, "10.0.0.2:5000", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1", true},
		{"spoofed left entries skipped", xff, "10.0.0.2:5000", []string{"1.1.1.1, 198.51.100.1, 10.0.0.3"}, "198.51.100.1", true},
		{"several header lines", xff, "10.0.0.2:5000", []string{"1.1.1.1", "198.51.100.1, 10.9.9.9"}, "198.51.100.1", true},
		{"chain of only proxies", xff, "10.0.0.2:5000", []string{"10.0.0.5"}, "10.0.0.5", true},
		{"no header from trusted peer", xff, "10.0.0.2:5000", nil, "10.0.0.2", true},
		{"garbage stops at last vouched", xff, "10.0.0.2:5000", []string{"198.51.100.1, bogus"}, "10.0.0.2", true},
		{"IPv6 peer and client", xff, "[fd00::1]:443", []string{"2001:db8::7"}, "2001:db8::7", true},
		{"IPv4-mapped peer is trusted", xff, "[::ffff:10.0.0.2]:443", []string{"::ffff:198.51.100.1"}, "198.51.100.1", true},
		{"IPv4-mapped untrusted peer", xff, "[::ffff:203.0.113.9]:443", []string{"198.51.100.1"}, "203.0.113.9", false},
		{"entry with port", xff, "10.0.0.2:5000", []string{"198.51.100.1:1234"}, "198.51.100.1", true},
		{"Forwarded quoted IPv6", fwd, "10.0.0.2:1", []string{`for="[2001:db8:cafe::17]:4711";proto=https`}, "2001:db8:cafe::17", true},
		{"Forwarded list", fwd, "10.0.0.2:1", []string{"for=6.6.6.6, for=198.51.100.2;by=10.0.0.2"}, "198.51.100.2", true},
		{"Forwarded obfuscated", fwd, "10.0.0.2:1", []string{"for=_hidden"}, "10.0.0.2", true},
		{"Forwarded ignores X-Forwarded-For", fwd, "10.0.0.2:1", nil, "10.0.0.2", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			header := tc.c.header()
			got, viaProxy := tc.c.Resolve(request(tc.remote, header, tc.values...))
			assert.Equal(t, tc.want, got.String())
			assert.Equal(t, tc.trusted, viaProxy)
			assert.Equal(t, tc.want, tc.c.Extract(request(tc.remote, header, tc.values...)), "Extract, Echo's form")
		})
	}
	// A Forwarded-reading resolver ignores X-Forwarded-For entirely.
	r := request("10.0.0.2:1", HeaderXForwardedFor, "198.51.100.1")
	got, _ := fwd.Resolve(r)
	assert.Equal(t, "10.0.0.2", got.String())
}

// FuzzParsePrefixList: no input panics, and every accepted list round-trips
// through its canonical form to the same membership answers.
func FuzzParsePrefixList(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "2001:db8::/32, 192.0.2.1", "::ffff:10.0.0.0/104", "fe80::1%eth0", "1.2.3.4/33", "", "0.0.0.0/0,::/0", "[::1]", "1.2.3.4/08"} {
		f.Add(s, "10.1.2.3")
	}
	f.Fuzz(func(t *testing.T, list, addr string) {
		l, err := ParsePrefixList(list)
		if err != nil {
			return
		}
		again, err := ParsePrefixList(l.String())
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", l.String(), list, err)
		}
		if again.String() != l.String() {
			t.Fatalf("canonical form not stable: %q then %q", l.String(), again.String())
		}
		if a, err := netip.ParseAddr(strings.TrimSpace(addr)); err == nil {
			if l.Contains(a) != again.Contains(a) {
				t.Fatalf("membership of %s differs between %q and its canonical form", a, list)
			}
			if a.Is4In6() && l.Contains(a) != l.Contains(a.Unmap()) {
				t.Fatalf("%s and its IPv4 form disagree", a)
			}
		}
		c := ClientIP{Trusted: l}
		r := request("10.0.0.1:1", HeaderXForwardedFor, addr)
		_, _ = c.Resolve(r)
	})
}
