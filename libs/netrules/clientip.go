package netrules

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Forwarding headers a ClientIP can be told to believe.
const (
	HeaderXForwardedFor = "X-Forwarded-For"
	HeaderForwarded     = "Forwarded"
)

// ClientIP finds the address a request comes from. The TCP peer is the
// answer unless it is a trusted proxy; then the forwarding header is read
// from the right (the entry the nearest proxy appended) and the first
// address that is not itself a trusted proxy is the client. Entries left
// of it were written by the client and are never believed. Only one
// header is read, the one the proxies are known to maintain: reading a
// second one would let a client supply a header the proxy passes through
// untouched.
type ClientIP struct {
	// Trusted are the proxies whose forwarding header is believed.
	Trusted PrefixList
	// Header is HeaderXForwardedFor (default) or HeaderForwarded.
	Header string
}

// Peer returns the TCP peer of r (unmapped), or the zero Addr.
func Peer(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	// RemoteAddr without a port (tests, unusual transports).
	host, _, splitErr := net.SplitHostPort(r.RemoteAddr)
	if splitErr != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// Resolve returns the client address of r and whether the immediate peer
// is a trusted proxy (so that other headers it sets, such as a CDN's
// country header, may be believed).
func (c ClientIP) Resolve(r *http.Request) (client netip.Addr, viaTrustedProxy bool) {
	peer := Peer(r)
	if c.Trusted.Len() == 0 || !c.Trusted.Contains(peer) {
		return peer, false
	}
	values := r.Header.Values(c.header())
	client = peer
	// Right to left over every value of every header line.
	for i := len(values) - 1; i >= 0; i-- {
		rest := values[i]
		for rest != "" {
			entry := rest
			if k := strings.LastIndexByte(rest, ','); k >= 0 {
				entry, rest = rest[k+1:], rest[:k]
			} else {
				rest = ""
			}
			a, ok := c.parseEntry(entry)
			if !ok {
				// Garbage or an obfuscated node: stop at the last address
				// a trusted proxy vouched for.
				return client, true
			}
			client = a
			if !c.Trusted.Contains(a) {
				return client, true
			}
		}
	}
	return client, true
}

func (c ClientIP) header() string {
	if c.Header == "" {
		return HeaderXForwardedFor
	}
	return c.Header
}

func (c ClientIP) parseEntry(entry string) (netip.Addr, bool) {
	entry = strings.TrimSpace(entry)
	if c.header() == HeaderForwarded {
		return parseForwardedFor(entry)
	}
	return parseNode(entry)
}

// parseForwardedFor reads the for= parameter of one RFC 7239 element
// ("for=192.0.2.60;proto=http;by=203.0.113.43").
func parseForwardedFor(element string) (netip.Addr, bool) {
	for _, pair := range strings.Split(element, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || !strings.EqualFold(k, "for") {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return parseNode(v)
	}
	return netip.Addr{}, false
}

// parseNode reads an address with or without a port: 192.0.2.1,
// 192.0.2.1:80, 2001:db8::1, [2001:db8::1] or [2001:db8::1]:80.
func parseNode(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// DefaultIPv6PrefixBits is the IPv6 prefix that per-address limits and
// blocks treat as one client: a /64 is what one subscriber or one cloud
// instance is routinely given, so keying on the full address would let a
// single host rotate through 2^64 addresses.
const DefaultIPv6PrefixBits = 64

// AddrKey names the client a rate limit or block applies to: an IPv4
// address as itself, an IPv6 address by its prefix of v6Bits bits
// ("2001:db8:1:2::/64"; 128 or 0: the whole address).
func AddrKey(a netip.Addr, v6Bits int) string {
	a = a.Unmap()
	if !a.Is6() || v6Bits <= 0 || v6Bits >= 128 {
		return a.WithZone("").String()
	}
	p, err := a.WithZone("").Prefix(v6Bits)
	if err != nil {
		return a.String()
	}
	return p.String()
}

// Extract returns the client address of r as a string, in the form of
// Echo's IPExtractor (and so c.RealIP()).
func (c ClientIP) Extract(r *http.Request) string {
	a, _ := c.Resolve(r)
	return a.String()
}

// NewClientIP parses trusted proxies (comma-separated CIDRs) and the
// forwarding header (HeaderXForwardedFor or HeaderForwarded; empty: the
// former) into a ClientIP.
func NewClientIP(trustedProxies, header string) (ClientIP, error) {
	trusted, err := ParsePrefixList(trustedProxies)
	if err != nil {
		return ClientIP{}, fmt.Errorf("trusted proxies: %w", err)
	}
	if header == "" {
		header = HeaderXForwardedFor
	}
	if header != HeaderXForwardedFor && header != HeaderForwarded {
		return ClientIP{}, fmt.Errorf("forwarding header %q: use %s or %s", header, HeaderXForwardedFor, HeaderForwarded)
	}
	return ClientIP{Trusted: trusted, Header: header}, nil
}
