// Package oauthclients stores the OAuth2 clients of the token service in
// Postgres: their allowed scopes, their secrets as argon2id hashes (PHC
// strings, OWASP parameters), and whether they are disabled. It creates
// clients, rotates secrets (optionally keeping the previous one for a
// grace period), disables and enables them, and authenticates a client id
// and secret in time that does not depend on whether the client exists.
//
// Secrets are generated here (256 random bits) and returned exactly once;
// nothing can read them back.
package oauthclients

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/alexedwards/argon2id"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// NotifyChannel is the Postgres channel notified whenever a client is
// created, deleted, disabled or enabled.
const NotifyChannel = "switchyard_oauth_clients"

// Errors returned by the store.
var (
	// ErrNotFound: no client has that id.
	ErrNotFound = errors.New("no such client")
	// ErrExists: a client with that id already exists.
	ErrExists = errors.New("a client with that id already exists")
	// ErrInvalidCredentials: unknown client or wrong secret. The two are
	// deliberately indistinguishable.
	ErrInvalidCredentials = errors.New("invalid client credentials")
	// ErrDisabled: the credentials are right but the client is disabled.
	ErrDisabled = errors.New("client is disabled")
)

// HashParams are the argon2id parameters for new secret hashes (OWASP's
// recommended minimum: 19 MiB, 2 iterations, 1 lane). Existing hashes keep
// the parameters they were made with.
var HashParams = &argon2id.Params{Memory: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}

var (
	clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	// scopePattern is RFC 6749's scope-token.
	scopePattern = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]{1,128}$`)
)

// MaxSecretLength bounds what Authenticate will hash, so that a huge
// "secret" costs nothing.
const MaxSecretLength = 256

// Client is a registered client, without any secret material.
type Client struct {
	ID     string
	Name   string
	Scopes []string
	// DisabledAt is set while the client is disabled.
	DisabledAt *time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
	// SecretRotatedAt is when the secret was last rotated, if ever.
	SecretRotatedAt *time.Time
	// PreviousSecretExpiresAt is when the secret before the last rotation
	// stops working, if it still does.
	PreviousSecretExpiresAt *time.Time
}

// Disabled reports whether the client is disabled.
func (c Client) Disabled() bool { return c.DisabledAt != nil }

// NewClient describes a client to create.
type NewClient struct {
	// ID is the client id; empty means generate one.
	ID string
	// Name is free text for operators.
	Name string
	// Scopes the client may request.
	Scopes []string
	// Secret, when set, is used instead of a generated one (for
	// provisioning from a secret store). At least 32 characters.
	Secret string
}

// Store keeps clients in Postgres.
type Store struct {
	pool             *pgxpool.Pool
	dummyHash        string
	pepper           []byte
	acceptUnpeppered bool
	gate             *hashGate
	gateErr          error
	audit            AuditFunc
}

// AuditFunc records a change to a client inside the transaction that
// makes it (action: clients.create, clients.disable, clients.enable,
// clients.set_scopes, clients.rotate_secret; c: the client after it).
type AuditFunc func(ctx context.Context, tx pgx.Tx, action string, c Client) error

// WithAudit has every change to a client recorded by audit, in the
// change's own transaction: no change without its audit row.
func WithAudit(audit AuditFunc) Option {
	return func(s *Store) { s.audit = audit }
}

// change runs the statement that changes a client and returns the client
// as it is after, auditing it as action in the same transaction.
func (s *Store) change(ctx context.Context, action, sql string, args ...any) (Client, error) {
	var c Client
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if c, err = scanClient(tx.QueryRow(ctx, sql, args...)); err != nil {
			return err
		}
		if s.audit != nil {
			return s.audit(ctx, tx, action, c)
		}
		return nil
	})
	return c, err
}

// New returns a Store on pool.
func New(pool *pgxpool.Pool, opts ...Option) (*Store, error) {
	// Unknown client ids are checked against this hash so that they take
	// as long as known ones.
	dummy, err := argon2id.CreateHash(rand.Text(), HashParams)
	if err != nil {
		return nil, fmt.Errorf("creating the dummy secret hash: %w", err)
	}
	s := &Store{pool: pool, dummyHash: dummy}
	for _, o := range opts {
		o(s)
	}
	if s.pepper != nil && len(s.pepper) < MinPepperLength {
		return nil, fmt.Errorf("the client-secret pepper must be at least %d bytes", MinPepperLength)
	}
	if s.gateErr != nil {
		return nil, s.gateErr
	}
	return s, nil
}

// ValidateScopes checks that every scope is an RFC 6749 scope-token.
func ValidateScopes(scopes []string) error {
	for _, s := range scopes {
		if !scopePattern.MatchString(s) {
			return fmt.Errorf("scope %q is not a valid scope token (printable ASCII without space, '\"' or '\\', at most 128 characters)", s)
		}
	}
	return nil
}

// ValidateClientID checks the form of a client id.
func ValidateClientID(id string) error {
	if !clientIDPattern.MatchString(id) {
		return fmt.Errorf("client id %q must be 1 to 64 characters of A-Z a-z 0-9 . _ -", id)
	}
	return nil
}

// Create registers a client and returns it with its secret, which is not
// stored anywhere in clear and cannot be shown again.
func (s *Store) Create(ctx context.Context, nc NewClient) (Client, string, error) {
	if nc.ID == "" {
		nc.ID = "c-" + strings.ToLower(rand.Text()[:20])
	}
	if err := ValidateClientID(nc.ID); err != nil {
		return Client{}, "", err
	}
	scopes := normaliseScopes(nc.Scopes)
	if err := ValidateScopes(scopes); err != nil {
		return Client{}, "", err
	}
	secret := nc.Secret
	if secret == "" {
		secret = NewSecret()
	} else if len(secret) < 32 || len(secret) > MaxSecretLength {
		return Client{}, "", fmt.Errorf("a provided secret must be 32 to %d characters", MaxSecretLength)
	}
	hash, err := s.hash(ctx, secret)
	if err != nil {
		return Client{}, "", err
	}
	c, err := s.change(ctx, "clients.create", `
		INSERT INTO oauth_clients (client_id, name, secret_hash, scopes) VALUES ($1, $2, $3, $4)
		RETURNING `+clientColumns, nc.ID, nc.Name, hash, scopes)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return Client{}, "", fmt.Errorf("client %q: %w", nc.ID, ErrExists)
	}
	if err != nil {
		return Client{}, "", fmt.Errorf("creating client %q: %w", nc.ID, err)
	}
	return c, secret, nil
}

// Get returns one client.
func (s *Store) Get(ctx context.Context, id string) (Client, error) {
	c, err := scanClient(s.pool.QueryRow(ctx, `SELECT `+clientColumns+` FROM oauth_clients WHERE client_id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Client{}, fmt.Errorf("client %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Client{}, fmt.Errorf("reading client %q: %w", id, err)
	}
	return c, nil
}

// Scopes returns one client's scopes, reading no other column (the
// replay service, which makes API keys, may read only these).
func (s *Store) Scopes(ctx context.Context, id string) ([]string, error) {
	var scopes []string
	err := s.pool.QueryRow(ctx, `SELECT scopes FROM oauth_clients WHERE client_id = $1`, id).Scan(&scopes)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("client %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the scopes of client %q: %w", id, err)
	}
	return scopes, nil
}

// List returns every client, ordered by id.
func (s *Store) List(ctx context.Context) ([]Client, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+clientColumns+` FROM oauth_clients ORDER BY client_id`)
	if err != nil {
		return nil, fmt.Errorf("listing clients: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Client, error) { return scanClient(r) })
	if err != nil {
		return nil, fmt.Errorf("listing clients: %w", err)
	}
	return out, nil
}

// SetDisabled disables or re-enables a client. A disabled client gets no
// new tokens, and gateways refuse its unexpired ones (see DisabledSet).
func (s *Store) SetDisabled(ctx context.Context, id string, disabled bool) (Client, error) {
	action := "clients.enable"
	if disabled {
		action = "clients.disable"
	}
	c, err := s.change(ctx, action, `
		UPDATE oauth_clients
		   SET disabled_at = CASE WHEN $2 THEN COALESCE(disabled_at, now()) END, updated_at = now()
		 WHERE client_id = $1
		RETURNING `+clientColumns, id, disabled)
	if errors.Is(err, pgx.ErrNoRows) {
		return Client{}, fmt.Errorf("client %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Client{}, fmt.Errorf("updating client %q: %w", id, err)
	}
	return c, nil
}

// SetScopes replaces the scopes a client may request. Tokens already issued
// keep the scopes they carry until they expire.
func (s *Store) SetScopes(ctx context.Context, id string, scopes []string) (Client, error) {
	scopes = normaliseScopes(scopes)
	if err := ValidateScopes(scopes); err != nil {
		return Client{}, err
	}
	c, err := s.change(ctx, "clients.set_scopes", `
		UPDATE oauth_clients SET scopes = $2, updated_at = now() WHERE client_id = $1
		RETURNING `+clientColumns, id, scopes)
	if errors.Is(err, pgx.ErrNoRows) {
		return Client{}, fmt.Errorf("client %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Client{}, fmt.Errorf("setting the scopes of client %q: %w", id, err)
	}
	return c, nil
}

// RotateSecret gives the client a new secret and returns it. With grace > 0
// the current secret keeps working for that long (one previous secret at
// most); with 0 it stops at once.
func (s *Store) RotateSecret(ctx context.Context, id string, grace time.Duration) (Client, string, error) {
	if grace < 0 {
		return Client{}, "", errors.New("the grace period cannot be negative")
	}
	secret := NewSecret()
	hash, err := s.hash(ctx, secret)
	if err != nil {
		return Client{}, "", err
	}
	c, err := s.change(ctx, "clients.rotate_secret", `
		UPDATE oauth_clients
		   SET previous_secret_hash = CASE WHEN $3 > 0 THEN secret_hash END,
		       previous_secret_expires_at = CASE WHEN $3 > 0 THEN now() + make_interval(secs => $3) END,
		       secret_hash = $2, secret_rotated_at = now(), updated_at = now()
		 WHERE client_id = $1
		RETURNING `+clientColumns, id, hash, grace.Seconds())
	if errors.Is(err, pgx.ErrNoRows) {
		return Client{}, "", fmt.Errorf("client %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Client{}, "", fmt.Errorf("rotating the secret of client %q: %w", id, err)
	}
	return c, secret, nil
}

// Authenticate checks a client id and secret. It returns the client, or
// ErrInvalidCredentials for an unknown id or a wrong secret (taking the same
// time for both), or ErrDisabled when the secret is right but the client is
// disabled. Comparison is constant-time (argon2id package). With a hash
// limit, ErrBusy means the secret could not be checked in time.
func (s *Store) Authenticate(ctx context.Context, id, secret string) (Client, error) {
	var current, previous string
	var c Client
	err := s.pool.QueryRow(ctx, `SELECT `+clientColumns+`, secret_hash, COALESCE(previous_secret_hash, '')
		FROM oauth_clients WHERE client_id = $1`, id).Scan(append(c.fields(), &current, &previous)...)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := s.compare(ctx, secret, s.dummyHash); errors.Is(err, ErrBusy) {
			return Client{}, err
		}
		return Client{}, ErrInvalidCredentials
	case err != nil:
		return Client{}, fmt.Errorf("reading client %q: %w", id, err)
	}
	if len(secret) > MaxSecretLength {
		if _, err := s.compare(ctx, "", s.dummyHash); errors.Is(err, ErrBusy) {
			return Client{}, err
		}
		return Client{}, ErrInvalidCredentials
	}
	ok, upgrade, err := s.matches(ctx, secret, current)
	if err != nil {
		return Client{}, fmt.Errorf("checking the secret of client %q: %w", id, err)
	}
	previousExpires := c.PreviousSecretExpiresAt
	if !ok && previous != "" && previousExpires != nil && time.Now().Before(*previousExpires) {
		if ok, _, err = s.matches(ctx, secret, previous); err != nil {
			return Client{}, fmt.Errorf("checking the previous secret of client %q: %w", id, err)
		}
	}
	if !ok {
		return Client{}, ErrInvalidCredentials
	}
	if upgrade {
		if err := s.repepper(ctx, id, secret, current); err != nil {
			return Client{}, err
		}
	}
	if c.Disabled() {
		return c, ErrDisabled
	}
	return c, nil
}

// repepper replaces the un-peppered hash old of client id, which secret
// matched, with a peppered one, unless the secret changed meanwhile.
func (s *Store) repepper(ctx context.Context, id, secret, old string) error {
	hash, err := s.hash(ctx, secret)
	if err != nil {
		return fmt.Errorf("re-hashing the secret of client %q with the pepper: %w", id, err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE oauth_clients SET secret_hash = $3, updated_at = now()
		WHERE client_id = $1 AND secret_hash = $2`, id, old, hash); err != nil {
		return fmt.Errorf("storing the peppered secret hash of client %q: %w", id, err)
	}
	return nil
}

// DisabledIDs returns the ids of every disabled client.
func (s *Store) DisabledIDs(ctx context.Context) (map[string]struct{}, error) {
	rows, err := s.pool.Query(ctx, `SELECT client_id FROM oauth_clients WHERE disabled_at IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("listing disabled clients: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing disabled clients: %w", err)
	}
	set := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		set[id] = struct{}{}
	}
	return set, nil
}

// NewSecret returns a new random client secret: 256 bits, base64url.
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

const clientColumns = `client_id, name, scopes, disabled_at, created_at, updated_at, secret_rotated_at, previous_secret_expires_at`

func (c *Client) fields() []any {
	return []any{&c.ID, &c.Name, &c.Scopes, &c.DisabledAt, &c.CreatedAt, &c.UpdatedAt, &c.SecretRotatedAt, &c.PreviousSecretExpiresAt}
}

func scanClient(row pgx.Row) (Client, error) {
	var c Client
	err := row.Scan(c.fields()...)
	return c, err
}

func normaliseScopes(scopes []string) []string {
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}
