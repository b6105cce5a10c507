package apikeys

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard/switchyard/libs/authn"
)

// Key is an API key's record (never the key itself).
type Key struct {
	ID       string `json:"id"`
	ClientID string `json:"client_id"`
	Name     string `json:"name,omitempty"`
	// Scopes are what a request with the key may do: a subset of the
	// client's, narrowed with them.
	Scopes []string `json:"scopes"`
	// AllowedCIDRs are the source networks the key may be used from
	// (none: anywhere).
	AllowedCIDRs []netip.Prefix `json:"allowed_cidrs"`
	ExpiresAt    *time.Time     `json:"expires_at,omitempty"`
	Plan         Plan           `json:"plan"`
	CreatedAt    time.Time      `json:"created_at"`
	// RotatedFrom is the key this one replaced.
	RotatedFrom string     `json:"rotated_from,omitempty"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt  *time.Time `json:"last_used_at,omitempty"`

	hash     [32]byte
	pepperID string
}

// Plan is a key's usage plan; zero fields mean no limit of that kind.
type Plan struct {
	// RatePerSecond and Burst: a token bucket for the key.
	RatePerSecond float64 `json:"rate_per_second,omitempty"`
	Burst         int     `json:"burst,omitempty"`
	// Quota requests per QuotaPeriod ("day" or "month", UTC).
	Quota       int64  `json:"quota,omitempty"`
	QuotaPeriod string `json:"quota_period,omitempty"`
}

// Validate checks the plan.
func (p Plan) Validate() error {
	switch {
	case p.RatePerSecond < 0 || p.Burst < 0 || p.Quota < 0 || math.IsNaN(p.RatePerSecond) || math.IsInf(p.RatePerSecond, 0):
		return errors.New("a usage plan's rate, burst and quota cannot be negative")
	case p.Burst > 0 && p.RatePerSecond == 0:
		return errors.New("a burst needs a rate")
	case (p.Quota > 0) != (p.QuotaPeriod != ""):
		return errors.New("a quota needs a period (day or month), and a period a quota")
	case p.QuotaPeriod != "" && p.QuotaPeriod != "day" && p.QuotaPeriod != "month":
		return fmt.Errorf("quota period %q is not day or month", p.QuotaPeriod)
	}
	return nil
}

// forEdge is the plan as the edge enforces it (nil: no plan); a rate
// without a burst gets a burst of one second's worth, at least 1.
func (p Plan) forEdge() *authn.Plan {
	if p == (Plan{}) {
		return nil
	}
	out := &authn.Plan{RatePerSecond: p.RatePerSecond, Burst: p.Burst}
	if out.RatePerSecond > 0 && out.Burst == 0 {
		out.Burst = max(1, int(math.Ceil(out.RatePerSecond)))
	}
	switch p.QuotaPeriod {
	case "day":
		out.Daily = p.Quota
	case "month":
		out.Monthly = p.Quota
	}
	return out
}

// Usable reports whether the key can authenticate at now.
func (k Key) Usable(now time.Time) bool {
	return k.RevokedAt == nil && (k.ExpiresAt == nil || now.Before(*k.ExpiresAt))
}

// DB is what the store runs queries on.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// AuditFunc records a change in the transaction that makes it.
type AuditFunc func(ctx context.Context, tx pgx.Tx, action string, key Key) error

// Store reads and changes API keys.
type Store struct {
	db     DB
	hasher *Hasher
	audit  AuditFunc
	now    func() time.Time
}

// NewStore returns a store over db. hasher may be nil for a store that
// only reads (Load, List) and revokes.
func NewStore(db DB, hasher *Hasher) *Store { return &Store{db: db, hasher: hasher, now: time.Now} }

// Audited returns a Store that records every change with fn.
func (s *Store) Audited(fn AuditFunc) *Store {
	c := *s
	c.audit = fn
	return &c
}

// NewKey is what Create needs.
type NewKey struct {
	ClientID string
	// ClientScopes are the client's scopes now; Scopes must be a subset
	// (empty Scopes: all of them).
	ClientScopes []string
	Name         string
	Scopes       []string
	AllowedCIDRs []netip.Prefix
	ExpiresAt    *time.Time
	Plan         Plan
}

// ErrNotFound is returned for a key id no key has.
var ErrNotFound = errors.New("no such API key")

// ErrInvalid wraps what is wrong with a request to make a key (scopes,
// plan, expiry, networks, an unknown client): the caller's to fix.
var ErrInvalid = errors.New("invalid API key request")

const keyColumns = `id, client_id, name, scopes, allowed_cidrs, expires_at, rate_per_second, burst, quota, quota_period,
	created_at, rotated_from, revoked_at, last_used_at, hash, pepper_id`

func scanKey(row pgx.Row) (Key, error) {
	var (
		k               Key
		rate            *float64
		burst           *int
		quota           *int64
		period, rotated *string
		hash            []byte
	)
	if err := row.Scan(&k.ID, &k.ClientID, &k.Name, &k.Scopes, &k.AllowedCIDRs, &k.ExpiresAt, &rate, &burst, &quota, &period,
		&k.CreatedAt, &rotated, &k.RevokedAt, &k.LastUsedAt, &hash, &k.pepperID); err != nil {
		return Key{}, err
	}
	if rate != nil {
		k.Plan.RatePerSecond = *rate
	}
	if burst != nil {
		k.Plan.Burst = *burst
	}
	if quota != nil {
		k.Plan.Quota = *quota
	}
	if period != nil {
		k.Plan.QuotaPeriod = *period
	}
	if rotated != nil {
		k.RotatedFrom = *rotated
	}
	copy(k.hash[:], hash)
	if k.Scopes == nil {
		k.Scopes = []string{}
	}
	if k.AllowedCIDRs == nil {
		k.AllowedCIDRs = []netip.Prefix{}
	}
	return k, nil
}

func nullable[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}

// Create makes a key and returns it (the only time it is ever shown) with
// its record.
func (s *Store) Create(ctx context.Context, nk NewKey) (string, Key, error) {
	return s.create(ctx, nk, "", "api_key.create", nil)
}

// create stores a new key; then, when set, runs in the same transaction
// after the insert.
func (s *Store) create(ctx context.Context, nk NewKey, rotatedFrom, action string, then func(pgx.Tx) error) (string, Key, error) {
	if s.hasher == nil {
		return "", Key{}, errors.New("creating API keys needs the API key pepper (SWITCHYARD_API_KEY_PEPPER)")
	}
	if err := s.check(&nk); err != nil {
		return "", Key{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	key, id, err := Generate()
	if err != nil {
		return "", Key{}, err
	}
	hash := s.hasher.Hash(key)
	var rec Key
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		rec, err = scanKey(tx.QueryRow(ctx, `INSERT INTO api_keys (id, client_id, name, hash, pepper_id, scopes, allowed_cidrs, expires_at,
				rate_per_second, burst, quota, quota_period, rotated_from)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING `+keyColumns,
			id, nk.ClientID, nk.Name, hash[:], s.hasher.PepperID(), nk.Scopes, nk.AllowedCIDRs, nk.ExpiresAt,
			nullable(nk.Plan.RatePerSecond), nullable(nk.Plan.Burst), nullable(nk.Plan.Quota), nullable(nk.Plan.QuotaPeriod),
			nullable(rotatedFrom)))
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "23503" {
				return fmt.Errorf("%w: no client %q", ErrInvalid, nk.ClientID)
			}
			return fmt.Errorf("storing the API key: %w", err)
		}
		if then != nil {
			if err := then(tx); err != nil {
				return err
			}
		}
		return s.record(ctx, tx, action, rec)
	})
	if err != nil {
		return "", Key{}, err
	}
	return key, rec, nil
}

// check validates nk and puts its scopes and networks in stored form.
func (s *Store) check(nk *NewKey) error {
	scopes, err := subset(nk.Scopes, nk.ClientScopes)
	if err != nil {
		return err
	}
	nk.Scopes = scopes
	if err := nk.Plan.Validate(); err != nil {
		return err
	}
	if len(nk.Name) > 200 {
		return errors.New("a key's name is at most 200 characters")
	}
	if nk.ExpiresAt != nil && !nk.ExpiresAt.After(s.now()) {
		return errors.New("the expiry is in the past")
	}
	cidrs := make([]netip.Prefix, 0, len(nk.AllowedCIDRs))
	for _, p := range nk.AllowedCIDRs {
		if !p.IsValid() {
			return errors.New("an allowed network is not valid")
		}
		cidrs = append(cidrs, p.Masked())
	}
	nk.AllowedCIDRs = cidrs
	return nil
}

func subset(want, of []string) ([]string, error) {
	if len(want) == 0 {
		return append([]string{}, of...), nil
	}
	out := make([]string, 0, len(want))
	for _, s := range want {
		if !slices.Contains(of, s) {
			return nil, fmt.Errorf("scope %q is not one of the client's (%s)", s, strings.Join(of, " "))
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func (s *Store) record(ctx context.Context, tx pgx.Tx, action string, k Key) error {
	if s.audit == nil {
		return nil
	}
	if err := s.audit(ctx, tx, action, k); err != nil {
		return fmt.Errorf("auditing %s: %w", action, err)
	}
	return nil
}

// Get returns one key's record.
func (s *Store) Get(ctx context.Context, id string) (Key, error) {
	k, err := scanKey(s.db.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Key{}, fmt.Errorf("reading API key %s: %w", id, err)
	}
	return k, nil
}

// List returns clientID's keys (every client's when empty), newest
// first, revoked ones included.
func (s *Store) List(ctx context.Context, clientID string) ([]Key, error) {
	rows, err := s.db.Query(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE $1 = '' OR client_id = $1
		ORDER BY client_id, created_at DESC`, clientID)
	if err != nil {
		return nil, fmt.Errorf("listing API keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) { return scanKey(r) })
	if err != nil {
		return nil, fmt.Errorf("listing API keys: %w", err)
	}
	return keys, nil
}

// Revoke ends a key at once (every gateway within the notification's
// delay). Revoking a revoked key changes nothing and is not an error.
func (s *Store) Revoke(ctx context.Context, id string) (Key, error) {
	var rec Key
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		rec, err = scanKey(tx.QueryRow(ctx, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
			RETURNING `+keyColumns, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if err != nil {
			return fmt.Errorf("revoking API key %s: %w", id, err)
		}
		return s.record(ctx, tx, "api_key.revoke", rec)
	})
	return rec, err
}

// Rotate makes a new key with the old one's client, name, scopes,
// networks and plan, and has the old one expire after overlap (or at its
// own expiry if sooner), so that callers can switch without an outage.
// clientScopes are the client's scopes now.
func (s *Store) Rotate(ctx context.Context, id string, overlap time.Duration, clientScopes []string) (string, Key, error) {
	if overlap < 0 {
		return "", Key{}, fmt.Errorf("%w: the overlap cannot be negative", ErrInvalid)
	}
	old, err := s.Get(ctx, id)
	if err != nil {
		return "", Key{}, err
	}
	if !old.Usable(s.now()) {
		return "", Key{}, fmt.Errorf("%w: API key %s is revoked or expired: create a new one", ErrInvalid, id)
	}
	// The old key's end is set in the new key's transaction, and only if
	// it is still usable then (it may have been revoked since the read).
	until := s.now().Add(overlap)
	endOld := func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE api_keys SET expires_at = least(coalesce(expires_at, $2), $2)
			WHERE id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`, id, until)
		if err != nil {
			return fmt.Errorf("ending the old key %s: %w", id, err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("%w: API key %s was revoked or expired meanwhile: create a new one", ErrInvalid, id)
		}
		return nil
	}
	return s.create(ctx, NewKey{ClientID: old.ClientID, ClientScopes: clientScopes, Name: old.Name,
		Scopes: old.Scopes, AllowedCIDRs: old.AllowedCIDRs, ExpiresAt: old.ExpiresAt, Plan: old.Plan}, old.ID, "api_key.rotate", endOld)
}

// usable returns every key that can authenticate now or later, and those
// revoked or expired in the last 30 days (so that a refusal can say why
// in the metrics), for a gateway's Set.
func (s *Store) usable(ctx context.Context) ([]Key, error) {
	rows, err := s.db.Query(ctx, `SELECT `+keyColumns+` FROM api_keys
		WHERE (revoked_at IS NULL OR revoked_at > now() - interval '30 days')
		  AND (expires_at IS NULL OR expires_at > now() - interval '30 days')`)
	if err != nil {
		return nil, fmt.Errorf("loading API keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) { return scanKey(r) })
	if err != nil {
		return nil, fmt.Errorf("loading API keys: %w", err)
	}
	return keys, nil
}

// touch records when keys were last used.
func (s *Store) touch(ctx context.Context, used map[string]time.Time) error {
	ids := make([]string, 0, len(used))
	ats := make([]time.Time, 0, len(used))
	for id, at := range used {
		ids = append(ids, id)
		ats = append(ats, at)
	}
	_, err := s.db.Exec(ctx, `UPDATE api_keys k SET last_used_at = u.at
		FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at)
		WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)`, ids, ats)
	if err != nil {
		return fmt.Errorf("recording API keys' last use: %w", err)
	}
	return nil
}
