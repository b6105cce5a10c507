package apikeys

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/pgnotify"
)

// NotifyChannel is where Postgres announces a change to api_keys.
const NotifyChannel = "switchyard_api_keys"

// Issuer is the Identity.Issuer of a request authenticated by a key.
const Issuer = "switchyard:api-key"

// HeaderName is the header that carries a key (the other way is
// Authorization: ApiKey <key>).
const HeaderName = "X-API-Key"

// SetOptions configures a Set.
type SetOptions struct {
	// PollInterval bounds how stale the set can be when a notification is
	// lost (default 10s).
	PollInterval time.Duration
	// FlushInterval is how often last_used_at is written (default 30s).
	FlushInterval time.Duration
	// ClientIP returns the request's client address as the edge resolved
	// it (through trusted proxies), for keys limited to networks.
	ClientIP func(*http.Request) string
	// Revoked says whether a client is disabled (oauthclients.DisabledSet).
	Revoked    func(clientID string) (bool, error)
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Set is a gateway's in-memory copy of the API keys, and the
// authn.Authenticator of requests that carry one.
type Set struct {
	store    *Store
	hasher   *Hasher
	opts     SetOptions
	reloader *pgnotify.Reloader
	now      func() time.Time
	checks   *prometheus.CounterVec
	// outcomes holds checks' counter per outcome, resolved once: a
	// labelled lookup per request would cost a hash of the label.
	outcomes map[string]prometheus.Counter
	loads    atomic.Int64
	// mu orders reloads and flushes (not requests), so that a flush's
	// record of what it wrote is not lost to a reload.
	mu sync.Mutex

	keys    atomic.Pointer[snapshot]
	loadErr atomic.Pointer[error]
	// dummy is compared against when the id names no key, so that unknown
	// and known keys cost the same.
	dummy [32]byte
}

// snapshot is the keys as of one load.
type snapshot struct {
	byID map[string]*entry
	// verified maps a whole key that matched its hash in this snapshot to
	// its entry, so that a key used again costs a map lookup instead of
	// an HMAC (as a verified token does). Only keys that matched get in,
	// so it holds at most one item per key; each load starts a new one.
	verified sync.Map
}

type entry struct {
	key      Key
	identity authn.Identity
	lastUsed atomic.Int64 // unix nanoseconds
	flushed  int64        // under Set.mu
}

// ErrNotLoaded is returned until the set has loaded once.
var ErrNotLoaded = errors.New("the API keys were not loaded yet")

// NewSet returns a Set reading from store (whose hasher it uses),
// notified through a dedicated connection from listen.
func NewSet(store *Store, listen pgnotify.Connector, opts SetOptions) (*Set, error) {
	if store.hasher == nil {
		return nil, errors.New("checking API keys needs the API key pepper (SWITCHYARD_API_KEY_PEPPER)")
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 10 * time.Second
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Set{store: store, hasher: store.hasher, opts: opts, now: time.Now,
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_gateway_api_key_checks_total",
			Help: "API key checks by outcome (ok, or why the key was refused: the caller only ever sees 401).",
		}, []string{"outcome"}),
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(s.checks); err != nil {
			return nil, err
		}
	}
	s.outcomes = map[string]prometheus.Counter{}
	for _, o := range outcomes {
		s.outcomes[o] = s.checks.WithLabelValues(o)
	}
	s.dummy = s.hasher.Hash("dummy")
	s.reloader = pgnotify.NewReloader(listen, NotifyChannel, opts.PollInterval, s.load, opts.Logger)
	notLoaded := ErrNotLoaded
	s.loadErr.Store(&notLoaded)
	return s, nil
}

// Run keeps the set current, and writes last use every FlushInterval,
// until ctx ends (it blocks), flushing last use once more on the way out.
func (s *Set) Run(ctx context.Context) {
	go s.reloader.Run(ctx)
	flush := time.NewTicker(s.opts.FlushInterval)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.Flush(fctx)
			cancel()
			return
		case <-flush.C:
			s.Flush(ctx)
		}
	}
}

func (s *Set) load(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	keys, err := s.store.usable(lctx)
	s.loads.Add(1)
	if err != nil {
		if ctx.Err() == nil {
			s.opts.Logger.Warn("reloading API keys failed; keeping the last set", "error", err)
		}
		s.loadErr.Store(&err)
		return
	}
	var old map[string]*entry
	if p := s.keys.Load(); p != nil {
		old = p.byID
	}
	next := make(map[string]*entry, len(keys))
	otherPepper := 0
	for _, k := range keys {
		if k.pepperID != s.hasher.PepperID() {
			otherPepper++
		}
		e := &entry{key: k, identity: authn.Identity{ClientID: k.ClientID, Scopes: k.Scopes, Issuer: Issuer, KeyID: k.ID,
			Plan: k.Plan.forEdge()}}
		if prev, ok := old[k.ID]; ok {
			e.lastUsed.Store(prev.lastUsed.Load())
			e.flushed = prev.flushed
		}
		next[k.ID] = e
	}
	if otherPepper > 0 {
		s.opts.Logger.Warn("API keys hashed with another pepper cannot be used", "keys", otherPepper, "pepper_id", s.hasher.PepperID())
	}
	s.keys.Store(&snapshot{byID: next})
	var none error
	s.loadErr.Store(&none)
}

// Loads is how many times the set has read the keys (at start, on each
// notification, on each poll).
func (s *Set) Loads() int64 { return s.loads.Load() }

// Ready is nil once the set has loaded; after that, the error of the last
// reload (the last good set is kept).
func (s *Set) Ready(context.Context) error { return *s.loadErr.Load() }

// Flush writes the last use of every key used since the last flush.
func (s *Set) Flush(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.keys.Load()
	if p == nil {
		return
	}
	used := map[string]time.Time{}
	var entries []*entry
	for id, e := range p.byID {
		if at := e.lastUsed.Load(); at > e.flushed {
			used[id] = time.Unix(0, at)
			entries = append(entries, e)
		}
	}
	if len(used) == 0 {
		return
	}
	if err := s.store.touch(ctx, used); err != nil {
		s.opts.Logger.Warn("recording API keys' last use failed; will retry", "error", err)
		return
	}
	for _, e := range entries {
		e.flushed = used[e.key.ID].UnixNano()
	}
}

// Authenticate implements authn.Authenticator for a request that carries
// a key. Whatever is wrong with the key (malformed, unknown, wrong secret,
// revoked, expired, used from outside its networks, its client disabled)
// the caller gets the same 401; the reason goes to the metric and the
// access log. A known and an unknown id cost the same: one HMAC and a
// constant-time comparison.
func (s *Set) Authenticate(r *http.Request) (authn.Identity, error) {
	key, _ := authn.APIKeyFromRequest(r)
	id, reason, err := s.check(r, key)
	if c, ok := s.outcomes[reason]; ok {
		c.Inc()
	}
	return id, err
}

// outcomes are the values of the checks metric's label.
var outcomes = []string{"ok", "unavailable", "ambiguous", "malformed", "unknown", "other_pepper", "wrong_secret",
	"revoked", "expired", "source_not_allowed", "client_disabled"}

func (s *Set) check(r *http.Request, key string) (authn.Identity, string, error) {
	if len(r.Header["X-Api-Key"]) > 0 && len(r.Header["Authorization"]) > 0 {
		return refused("ambiguous", "the request carries both an API key and an Authorization header")
	}
	keyID, err := Parse(key)
	if err != nil {
		return refused("malformed", "the API key is malformed")
	}
	p := s.keys.Load()
	if p == nil {
		return authn.Identity{}, "unavailable", authn.Fail(authn.ErrUnavailable, "api_keys_unavailable", "%v", *s.loadErr.Load())
	}
	var e *entry
	if v, ok := p.verified.Load(key); ok {
		e = v.(*entry) //nolint:errcheck // only entries are stored
	} else {
		e = p.byID[keyID]
		want := &s.dummy
		if e != nil {
			want = &e.key.hash
		}
		got := s.hasher.Hash(key)
		match := subtle.ConstantTimeCompare(got[:], want[:]) == 1
		switch {
		case e == nil:
			return refused("unknown", "no API key has this id")
		case e.key.pepperID != s.hasher.PepperID():
			return refused("other_pepper", "the API key was hashed with another pepper")
		case !match:
			return refused("wrong_secret", "the API key's secret does not match")
		}
		p.verified.Store(key, e)
	}
	now := s.now()
	switch {
	case e.key.RevokedAt != nil:
		return refused("revoked", "the API key is revoked")
	case e.key.ExpiresAt != nil && !now.Before(*e.key.ExpiresAt):
		return refused("expired", "the API key has expired")
	}
	if len(e.key.AllowedCIDRs) > 0 && !s.allowedSource(r, e.key.AllowedCIDRs) {
		return refused("source_not_allowed", "the API key may not be used from this address")
	}
	if s.opts.Revoked != nil {
		disabled, err := s.opts.Revoked(e.key.ClientID)
		switch {
		case err != nil:
			return authn.Identity{}, "unavailable", authn.Fail(authn.ErrUnavailable, "disabled_clients_unknown", "%v", err)
		case disabled:
			return refused("client_disabled", "the API key's client is disabled")
		}
	}
	e.lastUsed.Store(now.UnixNano())
	return e.identity, "ok", nil
}

func refused(reason, msg string) (authn.Identity, string, error) {
	return authn.Identity{}, reason, authn.Fail(authn.ErrUnauthenticated, authn.Reason("api_key_"+reason), "%s", msg)
}

func (s *Set) allowedSource(r *http.Request, allowed []netip.Prefix) bool {
	raw := r.RemoteAddr
	if s.opts.ClientIP != nil {
		raw = s.opts.ClientIP(r)
	} else if ap, err := netip.ParseAddrPort(raw); err == nil {
		raw = ap.Addr().String()
	}
	addr, err := netip.ParseAddr(raw)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range allowed {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
