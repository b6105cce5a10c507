// Package callbacks owns completion callbacks' rules: which hosts a
// client's callback URLs may name (table client_callback_hosts), the
// secrets its callbacks are signed with (table callback_secrets, rotated
// with an overlap), and how a delivery is signed (the Standard Webhooks
// specification: webhook-id, webhook-timestamp, webhook-signature).
//
// A submission names its URL in the Switchyard-Callback-Url header; the
// gateway refuses a URL whose host is not on the client's list (422). When
// the job finishes, a database trigger (migration 00019) writes a job of
// type JobType in the same transaction; the worker's handler
// (services/worker/callback) delivers it, retried and dead-lettered like
// any job.
package callbacks

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// JobType is the built-in job type that delivers callbacks, and the name
// of its handler in the worker.
const JobType = "switchyard-callback"

// Header is the request header that names a submission's callback URL.
const Header = "Switchyard-Callback-Url"

// MaxURLLength bounds a callback URL.
const MaxURLLength = 2048

// ErrHostNotAllowed is returned for a callback URL whose host is not on
// its client's allow-list.
var ErrHostNotAllowed = errors.New("the callback URL's host is not on the client's callback allow-list")

// ParseURL checks that raw is a callback URL Switchyard will call: an
// absolute http or https URL with a host, no user info and no fragment,
// at most MaxURLLength bytes.
func ParseURL(raw string) (*url.URL, error) {
	if len(raw) > MaxURLLength {
		return nil, fmt.Errorf("the callback URL is longer than %d bytes", MaxURLLength)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, errors.New("the callback URL does not parse as a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("the callback URL must be an absolute http or https URL")
	case u.Host == "" || u.Opaque != "":
		return nil, errors.New("the callback URL has no host")
	case u.User != nil:
		return nil, errors.New("the callback URL may not carry user info")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, errors.New("the callback URL may not carry a fragment")
	}
	if port := u.Port(); port != "" && !validPort(port) {
		return nil, errors.New("the callback URL's port is not a port number")
	}
	return u, nil
}

// NormalizeHost checks an allow-list entry and returns it in the form it
// is stored and matched in: lower case, a host name or IP literal
// (IPv6 in brackets), optionally with :port, optionally starting with
// "*." to allow every subdomain of the rest.
func NormalizeHost(entry string) (string, error) {
	h := strings.ToLower(strings.TrimSpace(entry))
	wildcard := strings.HasPrefix(h, "*.")
	bare := strings.TrimPrefix(h, "*.")
	u, err := url.Parse("http://" + bare)
	if err != nil || u.Host != bare || u.Hostname() == "" || strings.ContainsAny(bare, "/?#@*") {
		return "", fmt.Errorf("callback host %q must be a host name or IP, optionally with :port (or *.domain)", entry)
	}
	if port := u.Port(); port != "" && !validPort(port) {
		return "", fmt.Errorf("callback host %q: %q is not a port number", entry, port)
	}
	if wildcard && net.ParseIP(u.Hostname()) != nil {
		return "", fmt.Errorf("callback host %q: a wildcard needs a domain name", entry)
	}
	return h, nil
}

// validPort reports whether port is a TCP port number, 1 to 65535.
func validPort(port string) bool {
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n > 0
}

// Allowed reports whether u's host matches an entry of hosts (entries as
// NormalizeHost returns them): an entry without a port matches the host
// on any port, one with a port that port only, and "*.example.com" any
// subdomain of example.com (not example.com itself).
func Allowed(u *url.URL, hosts []string) bool {
	host, port := strings.ToLower(u.Hostname()), u.Port()
	for _, entry := range hosts {
		eu, err := url.Parse("http://" + strings.TrimPrefix(entry, "*."))
		if err != nil {
			continue
		}
		if eu.Port() != "" && eu.Port() != port {
			continue
		}
		name := eu.Hostname()
		if strings.HasPrefix(entry, "*.") {
			if strings.HasSuffix(host, "."+name) {
				return true
			}
			continue
		}
		if host == name {
			return true
		}
	}
	return false
}
