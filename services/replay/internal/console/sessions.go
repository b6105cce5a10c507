package console

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNoSession is returned when the cookie names no live session (never made, signed
// out, idle too long or past its absolute expiry).
var ErrNoSession = errors.New("no console session")

// secretBytes is the size of a session's secret, the cookie's value.
const secretBytes = 32

// touchEvery is how stale last_seen_at may get before a request writes
// it: idle expiry is exact to this much, and a page load rarely writes.
const touchEvery = time.Minute

// Sessions keeps operator sessions in Postgres (table console_sessions),
// so that any replica of the replay service serves any session and a
// restart signs no one out.
//
// The cookie holds a random secret. The table holds its SHA-256 as the
// id, and the operator's credentials sealed with a key derived from the
// secret: the database alone cannot act as an operator.
type Sessions struct {
	pool *pgxpool.Pool
	// Idle ends a session not used for this long; Max ends any session
	// this long after sign-in.
	Idle, Max time.Duration
	now       func() time.Time
}

// NewSessions returns the session store on pool.
func NewSessions(pool *pgxpool.Pool, idle, maxAge time.Duration) *Sessions {
	return &Sessions{pool: pool, Idle: idle, Max: maxAge, now: time.Now}
}

// Session is one operator's signed-in session.
type Session struct {
	// ClientID is the operator's OAuth client.
	ClientID string
	// Scopes are those its token was granted.
	Scopes []string
	// ExpiresAt is the absolute expiry.
	ExpiresAt time.Time

	id, key     []byte
	csrf        string
	creds       credentials
	tokenExpiry time.Time
	lastSeen    time.Time
}

// credentials are what a session keeps sealed: the client secret (to get
// a new token when the current one expires) and the current token.
type credentials struct {
	Secret string `json:"s"`
	Token  string `json:"t"`
}

// CSRF is the session's anti-forgery token, which every state-changing
// form carries: an HMAC of the session's secret, so it cannot be
// guessed without the cookie and needs no storage.
func (s *Session) CSRF() string { return s.csrf }

// HasAnyScope reports whether the session holds one of scopes.
func (s *Session) HasAnyScope(scopes ...string) bool {
	return slices.ContainsFunc(scopes, func(want string) bool { return slices.Contains(s.Scopes, want) })
}

// keys derives a session's id, sealing key and CSRF token from its secret.
func keys(secret []byte) (id, key []byte, csrf string, err error) {
	sum := sha256.Sum256(secret)
	key, err = hkdf.Key(sha256.New, secret, nil, "switchyard console session seal", 32)
	if err != nil {
		return nil, nil, "", fmt.Errorf("deriving the session key: %w", err)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("switchyard console csrf"))
	return sum[:], key, base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}

func seal(key []byte, c credentials) ([]byte, error) {
	plain, err := json.Marshal(c) //nolint:gosec // G117: marshalled only to be sealed (AES-GCM) on the next lines
	if err != nil {
		return nil, fmt.Errorf("encoding session credentials: %w", err)
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("session nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, plain, nil), nil
}

func unseal(key, sealed []byte) (credentials, error) {
	var c credentials
	aead, err := newAEAD(key)
	if err != nil {
		return c, err
	}
	if len(sealed) < aead.NonceSize() {
		return c, errors.New("sealed session credentials are too short")
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], nil)
	if err != nil {
		return c, fmt.Errorf("opening session credentials: %w", err)
	}
	if err := json.Unmarshal(plain, &c); err != nil {
		return c, fmt.Errorf("decoding session credentials: %w", err)
	}
	return c, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("session cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("session cipher: %w", err)
	}
	return aead, nil
}

// NewSession is what sign-in starts a session with.
type NewSession struct {
	ClientID, ClientSecret string
	Scopes                 []string
	Token                  string
	TokenExpiry            time.Time
	SourceIP, UserAgent    string
}

// Create stores a new session and returns the cookie value that names
// it. Sessions past their expiry are deleted on the way.
func (s *Sessions) Create(ctx context.Context, n NewSession) (string, *Session, error) {
	secret := make([]byte, secretBytes)
	if _, err := rand.Read(secret); err != nil {
		return "", nil, fmt.Errorf("session secret: %w", err)
	}
	id, key, csrf, err := keys(secret)
	if err != nil {
		return "", nil, err
	}
	creds := credentials{Secret: n.ClientSecret, Token: n.Token}
	sealed, err := seal(key, creds)
	if err != nil {
		return "", nil, err
	}
	now := s.now()
	sess := &Session{
		ClientID: n.ClientID, Scopes: n.Scopes, ExpiresAt: now.Add(s.Max),
		id: id, key: key, csrf: csrf, creds: creds, tokenExpiry: n.TokenExpiry, lastSeen: now,
	}
	ua := n.UserAgent
	if len(ua) > 300 {
		ua = ua[:300]
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM console_sessions WHERE expires_at < $1 OR last_seen_at < $2`, now, now.Add(-s.Idle)); err != nil {
		return "", nil, fmt.Errorf("deleting expired console sessions: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO console_sessions
		(id, client_id, scopes, sealed, token_expires_at, created_at, last_seen_at, expires_at, source_ip, user_agent)
		VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9)`,
		id, n.ClientID, n.Scopes, sealed, n.TokenExpiry, now, sess.ExpiresAt, n.SourceIP, ua); err != nil {
		return "", nil, fmt.Errorf("storing the console session: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(secret), sess, nil
}

// Load returns the live session the cookie value names, and marks it
// used. A session found idle or expired is deleted: ErrNoSession.
func (s *Sessions) Load(ctx context.Context, cookie string) (*Session, error) {
	secret, err := base64.RawURLEncoding.DecodeString(cookie)
	if err != nil || len(secret) != secretBytes {
		return nil, ErrNoSession
	}
	id, key, csrf, err := keys(secret)
	if err != nil {
		return nil, err
	}
	sess := &Session{id: id, key: key, csrf: csrf}
	var sealed []byte
	err = s.pool.QueryRow(ctx, `SELECT client_id, scopes, sealed, token_expires_at, last_seen_at, expires_at
		FROM console_sessions WHERE id = $1`, id).
		Scan(&sess.ClientID, &sess.Scopes, &sealed, &sess.tokenExpiry, &sess.lastSeen, &sess.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("reading the console session: %w", err)
	}
	now := s.now()
	if !now.Before(sess.ExpiresAt) || now.Sub(sess.lastSeen) >= s.Idle {
		if err := s.End(ctx, sess); err != nil {
			return nil, err
		}
		return nil, ErrNoSession
	}
	if sess.creds, err = unseal(key, sealed); err != nil {
		return nil, err
	}
	if now.Sub(sess.lastSeen) >= touchEvery {
		if _, err := s.pool.Exec(ctx, `UPDATE console_sessions SET last_seen_at = $2 WHERE id = $1`, id, now); err != nil {
			return nil, fmt.Errorf("marking the console session used: %w", err)
		}
		sess.lastSeen = now
	}
	return sess, nil
}

// SaveToken keeps a new access token (and the scopes it was granted) in
// the session.
func (s *Sessions) SaveToken(ctx context.Context, sess *Session, token string, expiry time.Time, scopes []string) error {
	creds := sess.creds
	creds.Token = token
	sealed, err := seal(sess.key, creds)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `UPDATE console_sessions SET sealed = $2, token_expires_at = $3, scopes = $4 WHERE id = $1`,
		sess.id, sealed, expiry, scopes); err != nil {
		return fmt.Errorf("storing the console session's new token: %w", err)
	}
	sess.creds, sess.tokenExpiry, sess.Scopes = creds, expiry, scopes
	return nil
}

// End deletes the session: its cookie signs no one in any more.
func (s *Sessions) End(ctx context.Context, sess *Session) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM console_sessions WHERE id = $1`, sess.id); err != nil {
		return fmt.Errorf("ending the console session: %w", err)
	}
	return nil
}
