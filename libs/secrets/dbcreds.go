package secrets

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/switchyard/switchyard/libs/clock"
)

// DatabaseCredentials is a short-lived database user from Vault's database
// secrets engine (<mount>/creds/<role>), kept current by the client's Run:
// the lease is renewed while Vault allows, and before it ends (at 80-90 %
// of its life, Vault's LifetimeWatcher grace) a new user is fetched and
// every OnRotate callback runs, so that connection pools move to it while
// the old user still works. Vault drops the old user when its lease ends.
type DatabaseCredentials struct {
	client      *Client
	mount, role string

	mu        sync.Mutex
	user      string
	password  string
	lease     *vault.Secret
	expires   time.Time
	rotations int
	onRotate  []func()
}

// DatabaseCredentials fetches a database user for role from the database
// secrets engine at mount; the error fails start-up. Run keeps it current.
func (c *Client) DatabaseCredentials(ctx context.Context, mount, role string) (*DatabaseCredentials, error) {
	if c == nil {
		return nil, ErrDisabled
	}
	d := &DatabaseCredentials{client: c, mount: mount, role: role}
	if err := d.fetch(ctx); err != nil {
		return nil, err
	}
	c.logger.Info("database credentials from Vault", "role", d.concern(), "user", d.User(), "lease_ends", d.Expires())
	c.mu.Lock()
	defer c.mu.Unlock()
	c.databases = append(c.databases, d)
	if c.runCtx != nil {
		go d.keep(c.runCtx)
	}
	return d, nil
}

// Current returns the user and password to connect with now.
func (d *DatabaseCredentials) Current() (user, password string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.user, d.password
}

// User returns the current user name (not a secret: it names the lease).
func (d *DatabaseCredentials) User() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.user
}

// Rotations counts the users fetched after the first.
func (d *DatabaseCredentials) Rotations() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rotations
}

// Expires is when the current user's lease ends, unless renewed.
func (d *DatabaseCredentials) Expires() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expires
}

// OnRotate registers fn to run after every rotation (on the renewal
// goroutine; it should return quickly).
func (d *DatabaseCredentials) OnRotate(fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onRotate = append(d.onRotate, fn)
}

func (d *DatabaseCredentials) concern() string { return d.mount + "/creds/" + d.role }

// fetch asks Vault for a new user and makes it current.
func (d *DatabaseCredentials) fetch(ctx context.Context) error {
	var s *vault.Secret
	err := d.client.withToken(ctx, func() error {
		var err error
		s, err = d.client.api.Logical().ReadWithContext(ctx, d.concern())
		return err
	})
	if err != nil {
		return fmt.Errorf("reading database credentials %s: %w", d.concern(), err)
	}
	if s == nil || s.Data == nil {
		return fmt.Errorf("reading database credentials %s: no such role", d.concern())
	}
	user, _ := s.Data["username"].(string)
	password, _ := s.Data["password"].(string)
	if user == "" || password == "" || s.LeaseID == "" {
		return fmt.Errorf("reading database credentials %s: the answer has no username, password or lease", d.concern())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.user != "" {
		d.rotations++
	}
	d.user, d.password, d.lease = user, password, s
	d.expires = time.Now().Add(time.Duration(s.LeaseDuration) * time.Second)
	return nil
}

// keep renews the lease and rotates the user until ctx ends.
func (d *DatabaseCredentials) keep(ctx context.Context) {
	log := d.client.logger.With("role", d.concern())
	for ctx.Err() == nil {
		d.mu.Lock()
		lease := d.lease
		d.mu.Unlock()
		w, err := d.client.api.NewLifetimeWatcher(&vault.LifetimeWatcherInput{Secret: lease})
		if err != nil {
			d.client.setErr(d.concern(), fmt.Errorf("watching the lease: %w", err))
			if !clock.Sleep(ctx, d.client.cfg.RetryMax) {
				return
			}
			continue
		}
		go w.Start()
		reason := d.follow(ctx, w)
		w.Stop()
		if ctx.Err() != nil {
			return
		}
		previous := d.User()
		backoff := time.Second
		for attempt := 1; ctx.Err() == nil; attempt++ {
			err := d.fetch(ctx)
			if err == nil {
				break
			}
			d.client.setErr(d.concern(), err)
			log.Warn("fetching new database credentials failed; the current ones work until their lease ends",
				"error", err, "attempt", attempt, "lease_ends", d.Expires(), "retry_in", backoff.String())
			if !clock.Sleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, d.client.cfg.RetryMax)
		}
		if ctx.Err() != nil {
			return
		}
		d.client.setErr(d.concern(), nil)
		log.Info("database credentials rotated", "user", d.User(), "previous_user", previous, "lease_ends", d.Expires(),
			"reason", reason)
		d.mu.Lock()
		fns := append([]func(){}, d.onRotate...)
		d.mu.Unlock()
		for _, fn := range fns {
			fn()
		}
	}
}

// follow waits for the lease's watcher to end (the lease is near its end,
// or renewal failed), recording renewals.
func (d *DatabaseCredentials) follow(ctx context.Context, w *vault.LifetimeWatcher) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-w.DoneCh():
			if err == nil {
				err = errors.New("the lease is near its end")
			}
			return err
		case r := <-w.RenewCh():
			if r.Secret != nil {
				d.mu.Lock()
				d.expires = time.Now().Add(time.Duration(r.Secret.LeaseDuration) * time.Second)
				d.mu.Unlock()
			}
			d.client.setErr(d.concern(), nil)
		}
	}
}
