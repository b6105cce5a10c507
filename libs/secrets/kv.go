package secrets

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/switchyard/switchyard/libs/clock"
)

// KVSecret is one version of a KV v2 secret.
type KVSecret struct {
	Mount, Path string
	Version     int
	Data        map[string]any
	CreatedTime time.Time
}

// String returns the string value of key.
func (s KVSecret) String(key string) (string, error) {
	raw, ok := s.Data[key]
	if !ok {
		return "", fmt.Errorf("KV secret %s/%s has no key %q", s.Mount, s.Path, key)
	}
	v, ok := raw.(string)
	if !ok {
		return "", fmt.Errorf("KV secret %s/%s key %q is not a string", s.Mount, s.Path, key)
	}
	return v, nil
}

// ReadKV reads the current version of the KV v2 secret at mount/path.
func (c *Client) ReadKV(ctx context.Context, mount, path string) (KVSecret, error) {
	if c == nil {
		return KVSecret{}, ErrDisabled
	}
	out := KVSecret{Mount: mount, Path: path}
	err := c.withToken(ctx, func() error {
		s, err := c.api.KVv2(mount).Get(ctx, path)
		if err != nil {
			return err
		}
		out.Data = s.Data
		if s.VersionMetadata != nil {
			out.Version, out.CreatedTime = s.VersionMetadata.Version, s.VersionMetadata.CreatedTime
		}
		return nil
	})
	if err != nil {
		return KVSecret{}, fmt.Errorf("reading KV secret %s/%s: %w", mount, path, err)
	}
	return out, nil
}

// Scheme is the prefix of references this client resolves (config.Source).
func (c *Client) Scheme() string { return "vault" }

// Read resolves a reference "<mount>/<path>#<key>" to the key's string
// value (config.Source).
func (c *Client) Read(ctx context.Context, ref string) (string, error) {
	mount, path, key, err := ParseRef(ref)
	if err != nil {
		return "", err
	}
	s, err := c.ReadKV(ctx, mount, path)
	if err != nil {
		return "", err
	}
	return s.String(key)
}

// ParseRef splits "<mount>/<path>#<key>".
func ParseRef(ref string) (mount, path, key string, err error) {
	location, key, ok := strings.Cut(ref, "#")
	mount, path, okPath := strings.Cut(location, "/")
	if !ok || !okPath || key == "" || mount == "" || path == "" {
		return "", "", "", errors.New(`a Vault reference must look like "vault:<mount>/<path>#<key>"`)
	}
	return mount, path, key, nil
}

// watch is one watched secret.
type watch struct {
	mount, path string
	version     int
	fn          func(KVSecret)
}

// Watch reads the secret at mount/path now and calls fn with it, then
// with every newer version Run finds (checked every WatchInterval). The
// first read's error is returned (start-up fails on it); later failures
// keep the last version, make Ready report the client degraded, and are
// retried with backoff. fn runs on the watch's goroutine; it should not
// block for long.
func (c *Client) Watch(ctx context.Context, mount, path string, fn func(KVSecret)) error {
	if c == nil {
		return ErrDisabled
	}
	s, err := c.ReadKV(ctx, mount, path)
	if err != nil {
		return err
	}
	fn(s)
	w := &watch{mount: mount, path: path, version: s.Version, fn: fn}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watches = append(c.watches, w)
	if c.runCtx != nil {
		go c.follow(c.runCtx, w)
	}
	return nil
}

// follow checks one watched secret for new versions until ctx ends.
func (c *Client) follow(ctx context.Context, w *watch) {
	concern := w.mount + "/" + w.path
	wait, backoff := c.cfg.WatchInterval, time.Second
	failing := false
	for clock.Sleep(ctx, wait) {
		s, err := c.ReadKV(ctx, w.mount, w.path)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.setErr(concern, err)
			if !failing {
				c.logger.Warn("reading a watched Vault secret failed; keeping the last version and retrying", "secret", concern,
					"version", w.version, "error", err)
			}
			failing, wait, backoff = true, backoff, min(backoff*2, c.cfg.RetryMax)
			continue
		}
		c.setErr(concern, nil)
		if failing {
			c.logger.Info("watched Vault secret readable again", "secret", concern, "version", s.Version)
		}
		failing, wait, backoff = false, c.cfg.WatchInterval, time.Second
		if s.Version > w.version {
			c.logger.Info("new version of a watched Vault secret", "secret", concern, "version", s.Version, "previous", w.version)
			w.version = s.Version
			w.fn(s)
		}
	}
}
