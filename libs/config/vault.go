package config

import (
	"context"
	"errors"
	"fmt"
	"strings"

	vault "github.com/hashicorp/vault/api"
)

// VaultKV reads secrets from Vault KV v2 engines. A reference is
// "<mount>/<path>#<key>", e.g. "secret/switchyard/gateway#database_url".
type VaultKV struct {
	client *vault.Client
}

// NewVaultKV returns a VaultKV talking to the Vault at addr with token.
func NewVaultKV(addr, token string) (*VaultKV, error) {
	cfg := vault.DefaultConfig()
	cfg.Address = addr
	client, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating Vault client for %s: %w", addr, err)
	}
	client.SetToken(token)
	return &VaultKV{client: client}, nil
}

// Scheme implements Source.
func (v *VaultKV) Scheme() string { return "vault" }

// Read implements Source.
func (v *VaultKV) Read(ctx context.Context, ref string) (string, error) {
	location, key, ok := strings.Cut(ref, "#")
	mount, path, okPath := strings.Cut(location, "/")
	if !ok || !okPath || key == "" || mount == "" || path == "" {
		return "", errors.New(`a Vault reference must look like "vault:<mount>/<path>#<key>"`)
	}
	secret, err := v.client.KVv2(mount).Get(ctx, path)
	if err != nil {
		return "", fmt.Errorf("reading KV secret %s/%s: %w", mount, path, err)
	}
	raw, ok := secret.Data[key]
	if !ok {
		return "", fmt.Errorf("KV secret %s/%s has no key %q", mount, path, key)
	}
	s, ok := raw.(string)
	if !ok {
		return "", fmt.Errorf("KV secret %s/%s key %q is not a string", mount, path, key)
	}
	return s, nil
}
