package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// FileStore resolves the same "vault:<mount>/<path>#<key>" references as a
// Client, from a JSON file holding KV secrets by "<mount>/<path>":
//
//	{"secret/switchyard/tokens/oauth": {"pepper": "..."}}
//
// It is the local stack's secrets source while no Vault server is built
// (`switchyard dev up` writes the file under .dev/ with the names Vault
// would hold), so that the services read their secrets through the same
// references whichever store holds them. It has no leases, no audit log
// and no access control beyond the file's mode: development only.
type FileStore struct {
	// Path is the JSON file.
	Path string
}

// Scheme is the prefix of references the store resolves (config.Source):
// "vault", as the references name Vault's paths.
func (FileStore) Scheme() string { return "vault" }

// Read resolves "<mount>/<path>#<key>" (config.Source). The file is read
// on every call: a secret written after start-up is seen by the next read.
func (f FileStore) Read(_ context.Context, ref string) (string, error) {
	mount, path, key, err := ParseRef(ref)
	if err != nil {
		return "", err
	}
	all, err := ReadSecretsFile(f.Path)
	if err != nil {
		return "", err
	}
	data, ok := all[mount+"/"+path]
	if !ok {
		return "", fmt.Errorf("secret %s/%s is not in %s", mount, path, f.Path)
	}
	return KVSecret{Mount: mount, Path: path, Data: data}.String(key)
}

// ReadSecretsFile returns the secrets of a FileStore's file, keyed by
// "<mount>/<path>"; a file that does not exist holds none.
func ReadSecretsFile(path string) (map[string]map[string]any, error) {
	raw, err := os.ReadFile(path) //nolint:gosec // the path is the operator's setting
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]map[string]any{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the secrets file: %w", err)
	}
	all := map[string]map[string]any{}
	if err := json.Unmarshal(raw, &all); err != nil {
		return nil, fmt.Errorf("reading the secrets file %s: %w", path, err)
	}
	for location := range all {
		if mount, p, ok := strings.Cut(location, "/"); !ok || mount == "" || p == "" {
			return nil, fmt.Errorf("reading the secrets file %s: %q is not <mount>/<path>", path, location)
		}
	}
	return all, nil
}

// WriteSecretsFile writes secrets (keyed by "<mount>/<path>") to path,
// readable by its owner only, replacing the file atomically.
func WriteSecretsFile(path string, all map[string]map[string]any) error {
	raw, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the secrets file: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing the secrets file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing the secrets file: %w", err)
	}
	return nil
}
