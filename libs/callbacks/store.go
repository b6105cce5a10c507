package callbacks

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is what Store needs of a pool or a transaction.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Store reads and changes clients' callback hosts and signing secrets.
type Store struct {
	db    DB
	audit AuditFunc
}

// AuditFunc records a change (action "callbacks.set_hosts" or
// "callbacks.rotate_secret", the client, what it is now: never a secret)
// inside the transaction that makes it.
type AuditFunc func(ctx context.Context, tx pgx.Tx, action, clientID string, after map[string]any) error

// NewStore returns a Store over db.
func NewStore(db DB) *Store { return &Store{db: db} }

// Audited returns a Store that records every change with fn.
func (s *Store) Audited(fn AuditFunc) *Store { return &Store{db: s.db, audit: fn} }

func (s *Store) record(ctx context.Context, tx pgx.Tx, action, clientID string, after map[string]any) error {
	if s.audit == nil {
		return nil
	}
	if err := s.audit(ctx, tx, action, clientID, after); err != nil {
		return fmt.Errorf("auditing %s: %w", action, err)
	}
	return nil
}

// Hosts returns clientID's allow-list, sorted.
func (s *Store) Hosts(ctx context.Context, clientID string) ([]string, error) {
	rows, err := s.db.Query(ctx, `SELECT host FROM client_callback_hosts WHERE client_id = $1 ORDER BY host`, clientID)
	if err != nil {
		return nil, fmt.Errorf("reading callback hosts of %s: %w", clientID, err)
	}
	hosts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading callback hosts of %s: %w", clientID, err)
	}
	return hosts, nil
}

// SetHosts replaces clientID's allow-list with hosts (each checked with
// NormalizeHost; empty: no callbacks). Callbacks already accepted to a
// host no longer listed are not delivered (the worker checks again).
func (s *Store) SetHosts(ctx context.Context, clientID string, hosts []string) error {
	normal := make([]string, 0, len(hosts))
	for _, h := range hosts {
		n, err := NormalizeHost(h)
		if err != nil {
			return err
		}
		normal = append(normal, n)
	}
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM client_callback_hosts WHERE client_id = $1`, clientID); err != nil {
			return fmt.Errorf("clearing callback hosts of %s: %w", clientID, err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO client_callback_hosts (client_id, host) SELECT $1, h FROM unnest($2::text[]) AS h ON CONFLICT DO NOTHING`,
			clientID, normal)
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "23503" {
				return fmt.Errorf("no client %q", clientID)
			}
			return fmt.Errorf("setting callback hosts of %s: %w", clientID, err)
		}
		return s.record(ctx, tx, "callbacks.set_hosts", clientID, map[string]any{"hosts": normal})
	})
}

// Secret is one of a client's signing secrets.
type Secret struct {
	ID int64 `json:"id"`
	// Value is "whsec_" + base64 of 32 random bytes.
	Value     string     `json:"secret,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// SecretPrefix starts every signing secret (Standard Webhooks' convention).
const SecretPrefix = "whsec_"

// NewSecretValue returns a new random signing secret.
func NewSecretValue() (string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("generating a callback secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// RotateSecret gives clientID a new signing secret and returns it: from
// now on callbacks are signed with it, and with every older secret for
// overlap more (one signature each, so a receiver that still knows only
// an old secret keeps verifying them), after which the old ones stop.
// overlap 0 retires them at once.
func (s *Store) RotateSecret(ctx context.Context, clientID string, overlap time.Duration) (Secret, error) {
	if overlap < 0 {
		return Secret{}, errors.New("the overlap may not be negative")
	}
	value, err := NewSecretValue()
	if err != nil {
		return Secret{}, err
	}
	var out Secret
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE callback_secrets SET expires_at = now() + $2::interval
			WHERE client_id = $1 AND (expires_at IS NULL OR expires_at > now() + $2::interval)`, clientID, overlap)
		if err != nil {
			return fmt.Errorf("retiring the callback secrets of %s: %w", clientID, err)
		}
		err = tx.QueryRow(ctx, `INSERT INTO callback_secrets (client_id, secret) VALUES ($1, $2) RETURNING id, secret, created_at`,
			clientID, value).Scan(&out.ID, &out.Value, &out.CreatedAt)
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "23503" {
				return fmt.Errorf("no client %q", clientID)
			}
			return fmt.Errorf("storing a callback secret for %s: %w", clientID, err)
		}
		// Secrets retired for long enough are of no use to anyone.
		_, err = tx.Exec(ctx, `DELETE FROM callback_secrets WHERE client_id = $1 AND expires_at < now() - interval '30 days'`, clientID)
		if err != nil {
			return fmt.Errorf("deleting retired callback secrets of %s: %w", clientID, err)
		}
		return s.record(ctx, tx, "callbacks.rotate_secret", clientID, map[string]any{"secret_id": out.ID, "overlap": overlap.String()})
	})
	return out, err
}

// Secrets returns clientID's secrets that sign callbacks now, newest
// first; without values unless withValues.
func (s *Store) Secrets(ctx context.Context, clientID string, withValues bool) ([]Secret, error) {
	rows, err := s.db.Query(ctx, `SELECT id, secret, created_at, expires_at FROM callback_secrets
		WHERE client_id = $1 AND (expires_at IS NULL OR expires_at > now()) ORDER BY id DESC`, clientID)
	if err != nil {
		return nil, fmt.Errorf("reading callback secrets of %s: %w", clientID, err)
	}
	secrets, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Secret, error) {
		var sec Secret
		err := r.Scan(&sec.ID, &sec.Value, &sec.CreatedAt, &sec.ExpiresAt)
		if !withValues {
			sec.Value = ""
		}
		return sec, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading callback secrets of %s: %w", clientID, err)
	}
	return secrets, nil
}

// HostPolicy checks submissions' callback URLs against their client's
// allow-list, read through a short cache so that a burst of submissions
// costs one query per client per TTL. A change reaches it within TTL.
type HostPolicy struct {
	store *Store
	ttl   time.Duration
	now   func() time.Time

	mu    sync.Mutex
	cache map[string]cachedHosts
}

type cachedHosts struct {
	hosts []string
	until time.Time
}

// maxCachedClients bounds the cache: past it, the cache starts afresh.
const maxCachedClients = 100_000

// NewHostPolicy returns a HostPolicy reading from store, caching each
// client's list for ttl.
func NewHostPolicy(store *Store, ttl time.Duration) *HostPolicy {
	return &HostPolicy{store: store, ttl: ttl, now: time.Now, cache: map[string]cachedHosts{}}
}

// Check parses raw (ParseURL) and checks its host against clientID's
// allow-list: a *URLError for a malformed URL, ErrHostNotAllowed, or the
// store's error when the list cannot be read.
func (p *HostPolicy) Check(ctx context.Context, clientID, raw string) error {
	u, err := ParseURL(raw)
	if err != nil {
		return &URLError{Reason: err.Error()}
	}
	hosts, err := p.hosts(ctx, clientID)
	if err != nil {
		return err
	}
	if !Allowed(u, hosts) {
		return ErrHostNotAllowed
	}
	return nil
}

func (p *HostPolicy) hosts(ctx context.Context, clientID string) ([]string, error) {
	now := p.now()
	p.mu.Lock()
	c, ok := p.cache[clientID]
	p.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.hosts, nil
	}
	hosts, err := p.store.Hosts(ctx, clientID)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if len(p.cache) >= maxCachedClients {
		p.cache = map[string]cachedHosts{}
	}
	p.cache[clientID] = cachedHosts{hosts: hosts, until: now.Add(p.ttl)}
	p.mu.Unlock()
	return hosts, nil
}

// URLError is a malformed callback URL.
type URLError struct{ Reason string }

func (e *URLError) Error() string { return e.Reason }
