// Package netrules decides who a request comes from and whether that
// address may call: CIDR lists (IPv4 and IPv6; IPv4-mapped IPv6 addresses
// are compared as the IPv4 address they carry), allow/deny rules, and the
// client address behind trusted proxies (X-Forwarded-For or RFC 7239
// Forwarded, believed only when the peer that sent it is trusted).
package netrules

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// PrefixList is a set of address ranges.
type PrefixList struct {
	prefixes []netip.Prefix
}

// ParsePrefixList reads a list of CIDRs or single addresses separated by
// commas, spaces or newlines ("10.0.0.0/8, 2001:db8::/32 192.0.2.7").
// IPv4-mapped IPv6 ranges (::ffff:10.0.0.0/104) are stored as their IPv4
// range; host bits set below the prefix length are an error, because
// "10.1.2.3/8" is more often a typo than a wish.
func ParsePrefixList(s string) (PrefixList, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' || r == '\r' })
	return ParsePrefixes(fields)
}

// ParsePrefixes reads each item as a CIDR or a single address.
func ParsePrefixes(items []string) (PrefixList, error) {
	var l PrefixList
	for _, item := range items {
		p, err := ParsePrefix(item)
		if err != nil {
			return PrefixList{}, err
		}
		l.prefixes = append(l.prefixes, p)
	}
	return l, nil
}

// ParsePrefix reads one CIDR ("192.0.2.0/24", "2001:db8::/32") or one
// address (a /32 or /128).
func ParsePrefix(item string) (netip.Prefix, error) {
	item = strings.TrimSpace(item)
	if item == "" {
		return netip.Prefix{}, errors.New("empty address range")
	}
	if !strings.Contains(item, "/") {
		a, err := netip.ParseAddr(item)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is neither an address nor a CIDR", clip(item))
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: zoned addresses cannot be matched", clip(item))
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(item)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR: %w", clip(item), err)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %s?", clip(item), p.Masked())
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%q: an IPv4-mapped range needs a prefix length of at least 96", clip(item))
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Contains reports whether a falls in any range of the list. a is
// unmapped first, so ::ffff:10.1.2.3 matches 10.0.0.0/8.
func (l PrefixList) Contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range l.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Len is the number of ranges.
func (l PrefixList) Len() int { return len(l.prefixes) }

// String lists the ranges, comma-separated, in their canonical form.
func (l PrefixList) String() string {
	parts := make([]string, len(l.prefixes))
	for i, p := range l.prefixes {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// Rules allow and deny addresses. An address in Deny is refused; when
// Allow is not empty, an address outside it is refused too.
type Rules struct {
	Allow PrefixList
	Deny  PrefixList
}

// Empty reports whether the rules refuse nothing.
func (r Rules) Empty() bool { return r.Allow.Len() == 0 && r.Deny.Len() == 0 }

// Permits reports whether a passes the rules.
func (r Rules) Permits(a netip.Addr) bool {
	if r.Deny.Contains(a) {
		return false
	}
	return r.Allow.Len() == 0 || r.Allow.Contains(a)
}
