package oauthclients

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/alexedwards/argon2id"
	"golang.org/x/sync/semaphore"
)

// ErrBusy is returned when a secret could not be checked within the wait
// because the memory budget for secret checks is in use: the caller
// should answer 503 with Retry-After, not 401.
var ErrBusy = errors.New("too many secret checks in progress")

// HashLimit bounds the memory that argon2id checks may use at once. Each
// check holds its hash's memory parameter (19 MiB for HashParams) until
// it ends, so MemoryBytes / 19 MiB checks run in parallel; the others
// wait up to Wait, and at most MaxWaiting of them wait at all.
type HashLimit struct {
	// MemoryBytes is the budget; a hash needing more than all of it is
	// refused.
	MemoryBytes int64
	// Wait is how long a check waits for memory before ErrBusy.
	Wait time.Duration
	// MaxWaiting bounds the checks waiting (0: 16 per check that fits).
	MaxWaiting int
}

// Validate checks the limit.
func (l HashLimit) Validate() error {
	if l.MemoryBytes < int64(HashParams.Memory)*1024 {
		return fmt.Errorf("the secret-check memory budget (%d bytes) must hold at least one check of %d KiB", l.MemoryBytes, HashParams.Memory)
	}
	if l.Wait < 0 || l.MaxWaiting < 0 {
		return errors.New("the secret-check wait and waiting bound must not be negative")
	}
	return nil
}

// Parallel is how many checks of HashParams fit in the budget.
func (l HashLimit) Parallel() int { return int(l.MemoryBytes / (int64(HashParams.Memory) * 1024)) }

// WithHashLimit bounds the memory that secret checks and new hashes use
// at once (see HashLimit). Without it nothing is bounded.
func WithHashLimit(l HashLimit) Option {
	return func(s *Store) {
		if l.MaxWaiting == 0 {
			l.MaxWaiting = 16 * max(1, l.Parallel())
		}
		s.gate = &hashGate{sem: semaphore.NewWeighted(l.MemoryBytes / 1024), budgetKiB: l.MemoryBytes / 1024,
			wait: l.Wait, maxWaiting: int64(l.MaxWaiting)}
		s.gateErr = l.Validate()
	}
}

// hashGate is a weighted semaphore in KiB of argon2id memory.
type hashGate struct {
	sem        *semaphore.Weighted
	budgetKiB  int64
	wait       time.Duration
	maxWaiting int64
	waiting    atomic.Int64
	// Busy counts checks refused with ErrBusy.
	busy atomic.Int64
}

// acquire reserves kib of the budget, waiting up to the gate's wait.
func (g *hashGate) acquire(ctx context.Context, kib int64) (release func(), err error) {
	if g == nil {
		return func() {}, nil
	}
	if kib > g.budgetKiB {
		return nil, fmt.Errorf("a secret hash needs %d KiB, more than the whole budget of %d KiB", kib, g.budgetKiB)
	}
	release = func() { g.sem.Release(kib) }
	if g.sem.TryAcquire(kib) {
		return release, nil
	}
	if g.waiting.Add(1) > g.maxWaiting {
		g.waiting.Add(-1)
		g.busy.Add(1)
		return nil, ErrBusy
	}
	defer g.waiting.Add(-1)
	wctx, cancel := context.WithTimeout(ctx, g.wait)
	defer cancel()
	if err := g.sem.Acquire(wctx, kib); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("waiting to check a secret: %w", ctx.Err())
		}
		g.busy.Add(1)
		return nil, ErrBusy
	}
	return release, nil
}

// hashMemoryKiB is the memory parameter of a PHC argon2id string (with or
// without the pepper prefix), or HashParams' when it cannot be read.
func hashMemoryKiB(stored string) int64 {
	if rest, ok := strings.CutPrefix(stored, pepperedPrefix); ok {
		if _, phc, ok := strings.Cut(rest, ":"); ok {
			stored = phc
		}
	}
	if p, _, _, err := argon2id.DecodeHash(stored); err == nil {
		return int64(p.Memory)
	}
	return int64(HashParams.Memory)
}

// compare checks secret against a PHC hash inside the memory budget.
func (s *Store) compare(ctx context.Context, secret, phc string) (bool, error) {
	release, err := s.gate.acquire(ctx, hashMemoryKiB(phc))
	if err != nil {
		return false, err
	}
	defer release()
	return argon2id.ComparePasswordAndHash(secret, phc)
}

// create makes a PHC hash of secret inside the memory budget.
func (s *Store) create(ctx context.Context, secret string) (string, error) {
	release, err := s.gate.acquire(ctx, int64(HashParams.Memory))
	if err != nil {
		return "", err
	}
	defer release()
	h, err := argon2id.CreateHash(secret, HashParams)
	if err != nil {
		return "", fmt.Errorf("hashing client secret: %w", err)
	}
	return h, nil
}

// BusyRefusals is the number of secret checks refused for want of memory.
func (s *Store) BusyRefusals() int64 {
	if s.gate == nil {
		return 0
	}
	return s.gate.busy.Load()
}
