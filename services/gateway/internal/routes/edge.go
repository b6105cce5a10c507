package routes

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/switchyard/switchyard/libs/geoip"
	"github.com/switchyard/switchyard/libs/netrules"
	"github.com/switchyard/switchyard/libs/ratelimit"
)

// Edge is what stands in front of a route (or, at the top of the file, in
// front of every route): address and country rules, rate limits, quotas,
// CORS and accepted content types. A request passes the file's rules and
// then its route's; a route's rate limit is a bucket of its own, on top of
// the file's.
type Edge struct {
	// IP allows and denies addresses (the client's, behind trusted
	// proxies).
	IP netrules.Rules
	// Countries allows and denies ISO 3166-1 codes (upper case); the code
	// ZZ stands for addresses with no known country.
	Countries CountryRules
	// PerClient and PerIP are token buckets keyed by the caller's client
	// id and address (nil: none).
	PerClient, PerIP *ratelimit.Limit
	// Quota is requests per client per UTC day and month (file level).
	Quota Quota
	// Clients are per-client overrides of PerClient and Quota (file level
	// only): a usage plan per client.
	Clients map[string]ClientPlan
	// CORS, when set, answers preflights and adds CORS headers.
	CORS *CORS
	// ContentTypes, when set, are the media types a request body may have
	// (415 otherwise).
	ContentTypes []string
}

// CountryRules allow and deny countries by ISO code.
type CountryRules struct {
	Allow, Deny []string
}

// Empty reports whether the rules refuse nothing.
func (c CountryRules) Empty() bool { return len(c.Allow) == 0 && len(c.Deny) == 0 }

// Permits reports whether code passes the rules.
func (c CountryRules) Permits(code string) bool {
	if slices.Contains(c.Deny, code) {
		return false
	}
	return len(c.Allow) == 0 || slices.Contains(c.Allow, code)
}

// Quota is a number of requests per period (0: no quota).
type Quota struct {
	Daily, Monthly int64
}

// ClientPlan overrides the file's limits for one client.
type ClientPlan struct {
	PerClient *ratelimit.Limit
	Quota     *Quota
}

// CORS is a route's cross-origin policy.
type CORS struct {
	AllowOrigins     []string
	AllowHeaders     []string
	ExposeHeaders    []string
	AllowCredentials bool
	MaxAge           time.Duration
}

var (
	edgeKeys      = []string{"ip", "countries", "rate_limit", "quota", "cors", "content_types"}
	fileEdgeKeys  = append(slices.Clone(edgeKeys), "clients")
	listKeys      = []string{"allow", "deny"}
	rateLimitKeys = []string{"per_client", "per_ip"}
	limitKeys     = []string{"rate", "per", "burst"}
	quotaKeys     = []string{"daily", "monthly"}
	planKeys      = []string{"rate_limit", "quota"}
	corsKeys      = []string{"allow_origins", "allow_headers", "expose_headers", "allow_credentials", "max_age"}
)

// parseEdge reads an edge mapping; file is true for the file's own.
func parseEdge(n *yaml.Node, field string, file bool, fail failFunc) (Edge, error) {
	var e Edge
	allowed := edgeKeys
	if file {
		allowed = fileEdgeKeys
	}
	err := eachField(n, field, allowed, fail, func(key string, v *yaml.Node) error {
		ff := field + "." + key
		switch key {
		case "ip":
			return eachField(v, ff, listKeys, fail, func(k string, v *yaml.Node) error {
				items, err := stringList(v)
				if err != nil {
					return err
				}
				l, err := netrules.ParsePrefixes(items)
				if err != nil {
					return err
				}
				if k == "allow" {
					e.IP.Allow = l
				} else {
					e.IP.Deny = l
				}
				return nil
			})
		case "countries":
			return eachField(v, ff, listKeys, fail, func(k string, v *yaml.Node) error {
				items, err := stringList(v)
				if err != nil {
					return err
				}
				codes := make([]string, 0, len(items))
				for _, c := range items {
					if !geoip.ValidCode(c) {
						return fmt.Errorf("%q is not an ISO 3166-1 alpha-2 country code (ZZ: unknown)", c)
					}
					codes = append(codes, strings.ToUpper(c))
				}
				if k == "allow" {
					e.Countries.Allow = codes
				} else {
					e.Countries.Deny = codes
				}
				return nil
			})
		case "rate_limit":
			return parseRateLimits(v, ff, &e, fail)
		case "quota":
			if !file {
				return errors.New("quotas are per client across routes: set them at the top of the file (edge.quota, edge.clients)")
			}
			q, err := parseQuota(v, ff, fail)
			e.Quota = q
			return err
		case "clients":
			return parseClients(v, ff, &e, fail)
		case "cors":
			c, err := parseCORS(v, ff, fail)
			e.CORS = c
			return err
		case "content_types":
			items, err := stringList(v)
			if err != nil {
				return err
			}
			for _, ct := range items {
				if !strings.Contains(ct, "/") || strings.ContainsAny(ct, " ;,") {
					return fmt.Errorf("%q is not a media type such as application/json", ct)
				}
				e.ContentTypes = append(e.ContentTypes, strings.ToLower(ct))
			}
			return nil
		}
		return nil
	})
	return e, err
}

func parseRateLimits(v *yaml.Node, field string, e *Edge, fail failFunc) error {
	return eachField(v, field, rateLimitKeys, fail, func(k string, v *yaml.Node) error {
		l, err := parseLimit(v, field+"."+k, fail)
		if err != nil {
			return err
		}
		if k == "per_client" {
			e.PerClient = &l
		} else {
			e.PerIP = &l
		}
		return nil
	})
}

// parseLimit reads {rate: 100, per: 1s, burst: 200}; per defaults to 1s
// and burst to the rate (at least 1).
func parseLimit(v *yaml.Node, field string, fail failFunc) (ratelimit.Limit, error) {
	l := ratelimit.Limit{Period: time.Second}
	burstSet := false
	err := eachField(v, field, limitKeys, fail, func(k string, v *yaml.Node) error {
		switch k {
		case "rate":
			if v.Kind != yaml.ScalarNode || (v.Tag != "!!float" && v.Tag != "!!int") || v.Decode(&l.Rate) != nil || math.IsNaN(l.Rate) || l.Rate <= 0 {
				return errors.New("must be a positive number of requests")
			}
		case "per":
			return positiveDuration(v, &l.Period)
		case "burst":
			burstSet = true
			return intIn(v, 1, 1_000_000, &l.Burst)
		}
		return nil
	})
	if err != nil {
		return l, err
	}
	if l.Rate == 0 {
		return l, fail(v.Line, field+".rate", "is required")
	}
	if !burstSet {
		l.Burst = max(1, int(math.Ceil(l.Rate)))
	}
	if err := l.Valid(); err != nil {
		return l, fail(v.Line, field, "%v", err)
	}
	return l, nil
}

func parseQuota(v *yaml.Node, field string, fail failFunc) (Quota, error) {
	var q Quota
	err := eachField(v, field, quotaKeys, fail, func(k string, v *yaml.Node) error {
		if k == "daily" {
			return int64In(v, 1, math.MaxInt64/2, &q.Daily)
		}
		return int64In(v, 1, math.MaxInt64/2, &q.Monthly)
	})
	return q, err
}

func parseClients(v *yaml.Node, field string, e *Edge, fail failFunc) error {
	if v.Kind != yaml.MappingNode {
		return fail(v.Line, field, "must map client ids to {rate_limit, quota}")
	}
	e.Clients = map[string]ClientPlan{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, pv := v.Content[i], v.Content[i+1]
		id := k.Value
		ff := field + "." + id
		if id == "" || len(id) > 128 {
			return fail(k.Line, ff, "a client id is 1 to 128 characters")
		}
		var plan ClientPlan
		err := eachField(pv, ff, planKeys, fail, func(key string, v *yaml.Node) error {
			if key == "quota" {
				q, err := parseQuota(v, ff+".quota", fail)
				plan.Quota = &q
				return err
			}
			l, err := parseLimit(v, ff+".rate_limit", fail)
			plan.PerClient = &l
			return err
		})
		if err != nil {
			return err
		}
		e.Clients[id] = plan
	}
	return nil
}

func parseCORS(v *yaml.Node, field string, fail failFunc) (*CORS, error) {
	c := &CORS{MaxAge: 10 * time.Minute}
	err := eachField(v, field, corsKeys, fail, func(k string, v *yaml.Node) error {
		switch k {
		case "allow_origins":
			items, err := stringList(v)
			if err != nil {
				return err
			}
			for _, o := range items {
				if o == "*" {
					c.AllowOrigins = append(c.AllowOrigins, o)
					continue
				}
				u, err := url.Parse(o)
				if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
					return fmt.Errorf("%q is not an origin such as https://app.example.com (or *)", o)
				}
				c.AllowOrigins = append(c.AllowOrigins, strings.TrimSuffix(o, "/"))
			}
		case "allow_headers":
			return headerListAny(v, &c.AllowHeaders)
		case "expose_headers":
			return headerListAny(v, &c.ExposeHeaders)
		case "allow_credentials":
			return boolean(v, &c.AllowCredentials)
		case "max_age":
			return positiveDuration(v, &c.MaxAge)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(c.AllowOrigins) == 0 {
		return nil, fail(v.Line, field+".allow_origins", "is required")
	}
	if c.AllowCredentials && slices.Contains(c.AllowOrigins, "*") {
		return nil, fail(v.Line, field, "allow_credentials cannot be used with the origin * (browsers refuse it)")
	}
	return c, nil
}

// headerListAny is headerList without the reserved-header rule: CORS
// lists name request headers a browser may send (Authorization, say).
func headerListAny(n *yaml.Node, out *[]string) error {
	items, err := stringList(n)
	if err != nil {
		return err
	}
	for _, h := range items {
		if !headerNameRe.MatchString(h) {
			return fmt.Errorf("%q is not a header name", h)
		}
	}
	*out = items
	return nil
}

// stringList reads a list of strings.
func stringList(n *yaml.Node) ([]string, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, errors.New("must be a list")
	}
	out := make([]string, 0, len(n.Content))
	for _, item := range n.Content {
		var s string
		if err := scalar(item, &s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}
