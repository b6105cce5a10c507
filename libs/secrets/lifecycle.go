package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/switchyard/switchyard/libs/clock"
)

// Run keeps the client logged in and its watches running until ctx ends:
// the token is renewed by a LifetimeWatcher, and when renewal fails or the
// token reaches its max TTL the client logs in again (AppRole,
// Kubernetes), retrying with backoff while Vault is unreachable. A nil
// Client (Vault not configured) waits for ctx.
func (c *Client) Run(ctx context.Context) error {
	if c == nil {
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	c.mu.Lock()
	c.runCtx = ctx
	for _, w := range c.watches {
		wg.Go(func() { c.follow(ctx, w) })
	}
	for _, d := range c.databases {
		wg.Go(func() { d.keep(ctx) })
	}
	c.mu.Unlock()
	wg.Go(func() { c.keepAlive(ctx) })
	wg.Wait()
	return nil
}

func (c *Client) keepAlive(ctx context.Context) {
	for ctx.Err() == nil {
		c.mu.Lock()
		login, gen := c.login, c.gen
		c.mu.Unlock()
		if login == nil {
			// A token that cannot be renewed: nothing to do until it is
			// replaced (it never is) or ctx ends.
			select {
			case <-ctx.Done():
				return
			case <-c.newLogin:
				continue
			}
		}
		w, err := c.api.NewLifetimeWatcher(&vault.LifetimeWatcherInput{Secret: login, RenewBehavior: vault.RenewBehaviorErrorOnErrors})
		if err != nil {
			c.setErr("auth", fmt.Errorf("watching the token's lifetime: %w", err))
			if !clock.Sleep(ctx, c.cfg.RetryMax) {
				return
			}
			continue
		}
		go w.Start()
		reason, replaced := c.watchToken(ctx, w)
		w.Stop()
		if ctx.Err() != nil {
			return
		}
		if replaced {
			continue // a read logged in again: watch that token
		}
		if c.cfg.Auth == AuthToken {
			c.setErr("auth", fmt.Errorf("VAULT_TOKEN can no longer be renewed and a token cannot log in again, give the service a new token: %w", reason))
			c.logger.Error("Vault token can no longer be renewed", "error", reason)
			select {
			case <-ctx.Done():
				return
			case <-c.newLogin:
				continue
			}
		}
		c.logger.Info("Vault token renewal ended; logging in again", "reason", reason)
		c.reauthenticate(ctx, gen)
	}
}

// watchToken follows one LifetimeWatcher until it is done (renewal failed
// or the max TTL is near), a read logged in again (replaced), or ctx ends.
func (c *Client) watchToken(ctx context.Context, w *vault.LifetimeWatcher) (reason error, replaced bool) {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err(), false
		case <-c.newLogin:
			return nil, true
		case err := <-w.DoneCh():
			if err == nil {
				err = errors.New("the token reached its max TTL")
			}
			return err, false
		case r := <-w.RenewCh():
			c.mu.Lock()
			c.stats.Renewals++
			if r.Secret != nil && r.Secret.Auth != nil {
				c.stats.TokenTTL = time.Duration(r.Secret.Auth.LeaseDuration) * time.Second
				c.stats.TokenExpires = expiry(c.stats.TokenTTL)
			}
			c.mu.Unlock()
			c.setErr("auth", nil)
		}
	}
}

// reauthenticate logs in again unless someone did since generation seen,
// retrying with backoff until it succeeds or ctx ends.
func (c *Client) reauthenticate(ctx context.Context, seen int) bool {
	for attempt := 1; ctx.Err() == nil; attempt++ {
		c.loginMu.Lock()
		c.mu.Lock()
		current := c.gen
		c.mu.Unlock()
		if current != seen {
			c.loginMu.Unlock()
			return true
		}
		err := c.authenticate(ctx)
		c.loginMu.Unlock()
		if err == nil {
			c.setErr("auth", nil)
			c.logger.Info("logged in to Vault again", "auth", c.cfg.Auth, "attempts", attempt, "accessor", c.Stats().Accessor)
			return true
		}
		c.setErr("auth", err)
		// Full jitter, below 1 s doubling to RetryMax: every service
		// that lost Vault at once does not log in again at once.
		backoff := clock.FullJitter(time.Second, c.cfg.RetryMax, attempt)
		level := slog.LevelDebug // the first failure of a streak is the warning
		if attempt == 1 {
			level = slog.LevelWarn
		}
		c.logger.Log(ctx, level, "logging in to Vault failed; retrying until it answers", "auth", c.cfg.Auth, "error", err,
			"attempt", attempt, "retry_in", backoff.String())
		if !clock.Sleep(ctx, backoff) {
			return false
		}
	}
	return false
}

// withToken runs fn; if Vault refused the token (revoked, expired) and the
// client can log in, it logs in again once and retries fn.
func (c *Client) withToken(ctx context.Context, fn func() error) error {
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	err := fn()
	if err == nil || !isPermissionDenied(err) || c.cfg.Auth == AuthToken {
		return err
	}
	c.logger.Warn("Vault refused the token; logging in again", "error", err)
	loginCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c.loginMu.Lock()
	c.mu.Lock()
	current := c.gen
	c.mu.Unlock()
	var lerr error
	if current == gen {
		lerr = c.authenticate(loginCtx)
	}
	c.loginMu.Unlock()
	if lerr != nil {
		c.setErr("auth", lerr)
		return errors.Join(err, fmt.Errorf("logging in again: %w", lerr))
	}
	c.setErr("auth", nil)
	select {
	case c.newLogin <- struct{}{}:
	default:
	}
	return fn()
}

func isPermissionDenied(err error) bool {
	var re *vault.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

// Alongside returns work wrapped so that c runs (Run: renewal, re-login,
// watches) for as long as work does. A nil c returns work itself.
func Alongside(c *Client, work func(context.Context) error) func(context.Context) error {
	if c == nil {
		return work
	}
	return func(ctx context.Context) error {
		vctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = c.Run(vctx)
		}()
		err := work(ctx)
		cancel()
		<-done
		return err
	}
}
