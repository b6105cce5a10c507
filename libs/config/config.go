// Package config loads a service's settings into a typed struct from the
// environment and command-line flags (github.com/ardanlabs/conf/v3: one
// documented default and help line per setting, masked output) and
// resolves secrets.
//
// A Secret setting holds either its value, accepted as a development
// fallback and logged as such, or a reference to a secret store:
//
//	vault:<mount>/<path>#<key>    a key of a Vault KV v2 secret
//
// (or, in development with no Vault configured, of the JSON file
// SWITCHYARD_SECRETS_FILE names: secrets.FileStore).
//
// References are resolved once at start-up through a libs/secrets client:
// the one of the secrets.Config embedded in the configuration (connected
// here, so that the service can keep using it: Config.Client), or one
// built from the standard Vault variables when the configuration has
// none, unless the caller supplies a Source. A reference that cannot be
// read fails start-up with a message naming the setting and the
// reference.
package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"

	"github.com/ardanlabs/conf/v3"

	"github.com/switchyard/switchyard/libs/secrets"
)

// ErrHelp is returned by Load when --help or --version was asked for; the
// error's text is the help to print.
var ErrHelp = errors.New("help requested")

// ErrInvalid marks configuration that cannot work (a malformed setting or
// configuration file): the process exits with status 2, as for a usage
// error, rather than 1.
var ErrInvalid = errors.New("invalid configuration")

type invalidError struct{ err error }

func (e invalidError) Error() string   { return e.err.Error() }
func (e invalidError) Unwrap() []error { return []error{e.err, ErrInvalid} }

// Invalid marks err as invalid configuration, keeping its message.
func Invalid(err error) error {
	if err == nil {
		return nil
	}
	return invalidError{err: err}
}

type helpError struct{ text string }

func (e helpError) Error() string { return e.text }
func (e helpError) Unwrap() error { return ErrHelp }

// Source reads secrets by reference.
type Source interface {
	// Scheme is the reference prefix the source serves, e.g. "vault".
	Scheme() string
	// Read returns the secret named by ref (the part after "scheme:").
	Read(ctx context.Context, ref string) (string, error)
}

// Option changes how Load works.
type Option func(*options)

type options struct {
	sources []Source
	logger  *slog.Logger
}

// WithSource resolves references of src's scheme through src.
func WithSource(src Source) Option { return func(o *options) { o.sources = append(o.sources, src) } }

// WithLogger reports where every secret came from to logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Load fills cfg, a pointer to a struct with ardanlabs/conf tags, from
// defaults, the environment and flags, then resolves its Secret fields.
// Settings name their environment variable explicitly (conf:"env:NAME"),
// so Load uses no prefix.
func Load(ctx context.Context, cfg any, opts ...Option) error {
	o := options{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	help, err := conf.Parse("", cfg)
	if err != nil {
		if errors.Is(err, conf.ErrHelpWanted) || errors.Is(err, conf.ErrVersionWanted) {
			return helpError{text: help}
		}
		return Invalid(fmt.Errorf("reading configuration: %w", err))
	}
	vc := findVaultConfig(reflect.ValueOf(cfg))
	switch {
	case vc != nil && vc.Enabled():
		// Log in now, references or not: bad credentials fail start-up,
		// and the service gets a live client (Config.Client).
		client, err := vc.Connect(ctx, o.logger)
		if err != nil {
			return err
		}
		o.sources = append(o.sources, client)
		o.logger.Info("secrets source: Vault", "addr", vc.Addr, "auth", vc.Auth)
	case vc != nil && vc.File != "":
		o.sources = append(o.sources, secrets.FileStore{Path: vc.File})
		o.logger.Warn("secrets source: file (development only: no Vault configured)", "file", vc.File)
	case vc != nil:
		o.logger.Warn("secrets source: environment (development only: no Vault configured)")
	}
	return resolveSecrets(ctx, cfg, o)
}

// Resolve returns raw, or, when raw is a reference
// (vault:<mount>/<path>#<key>), the secret it names, read with the Vault
// login the environment describes (VAULT_ADDR, VAULT_AUTH_METHOD, ...) as
// the services read theirs: for a value a command takes outside a
// configuration struct, such as the CLI's DATABASE_URL.
func Resolve(ctx context.Context, raw string, opts ...Option) (string, error) {
	o := options{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	var holder struct{ Value Secret }
	if err := holder.Value.Set(raw); err != nil {
		return "", err
	}
	if err := resolveSecrets(ctx, &holder, o); err != nil {
		return "", err
	}
	return holder.Value.Value(), nil
}

// Follow calls apply with s's value and, when s was read through a vault:
// reference and client is the Vault client that read it, again with every
// new version of that secret (the client's watch, checked every
// SWITCHYARD_VAULT_WATCH_INTERVAL while the client runs): for settings
// that may change without a restart, such as SWITCHYARD_OPS_TOKEN. A new
// version without the key keeps the last value.
func Follow(ctx context.Context, s Secret, client *secrets.Client, apply func(string)) error {
	ref, isRef := strings.CutPrefix(s.Source(), "vault:")
	if !isRef || client == nil {
		apply(s.Value())
		return nil
	}
	mount, path, key, err := secrets.ParseRef(ref)
	if err != nil {
		return err
	}
	if err := client.Watch(ctx, mount, path, func(kv secrets.KVSecret) {
		if v, err := kv.String(key); err == nil {
			apply(v)
		}
	}); err != nil {
		return fmt.Errorf("following %s: %w", s.Source(), err)
	}
	return nil
}

// String renders cfg for a start-up log line, with secrets masked.
func String(cfg any) string {
	s, err := conf.String(cfg)
	if err != nil {
		return fmt.Sprintf("<unprintable config: %v>", err)
	}
	return s
}

func resolveSecrets(ctx context.Context, cfg any, o options) error {
	var errs []error
	walkSecrets(reflect.ValueOf(cfg), "", func(name string, s *Secret) {
		if s.raw == "" {
			return
		}
		scheme, ref, isRef := strings.Cut(s.raw, ":")
		if !isRef || !isScheme(scheme) {
			s.value, s.source = s.raw, "environment"
			o.logger.Info("secret from environment (development fallback)", "setting", name)
			return
		}
		src, err := sourceFor(ctx, cfg, scheme, &o)
		if err != nil {
			errs = append(errs, fmt.Errorf("setting %s: %w", name, err))
			return
		}
		v, err := src.Read(ctx, ref)
		if err != nil {
			errs = append(errs, fmt.Errorf("setting %s: reading %s: %w", name, s.raw, err))
			return
		}
		s.value, s.source = v, s.raw
		o.logger.Info("secret resolved", "setting", name, "source", s.raw)
	})
	return errors.Join(errs...)
}

// isScheme tells a reference ("vault:...") from a value that merely
// contains a colon, such as a URL ("postgres://...").
func isScheme(s string) bool { return s == "vault" }

func sourceFor(ctx context.Context, cfg any, scheme string, o *options) (Source, error) {
	for _, src := range o.sources {
		if src.Scheme() == scheme {
			return src, nil
		}
	}
	if scheme != "vault" {
		return nil, fmt.Errorf("no secret source for %q", scheme)
	}
	vc := findVaultConfig(reflect.ValueOf(cfg))
	if vc == nil {
		// No Vault settings in this configuration: the standard variables.
		fromEnv, err := secretsConfigFromEnv()
		if err != nil {
			return nil, err
		}
		vc = &fromEnv
	}
	if !vc.Enabled() && vc.File != "" {
		src := secrets.FileStore{Path: vc.File}
		o.sources = append(o.sources, src)
		return src, nil
	}
	if !vc.Enabled() {
		return nil, errors.New("a vault: reference needs VAULT_ADDR (or SWITCHYARD_SECRETS_FILE in development) and Vault credentials (VAULT_TOKEN, or VAULT_AUTH_METHOD=approle with VAULT_ROLE_ID and VAULT_SECRET_ID)")
	}
	client, err := vc.Connect(ctx, o.logger)
	if err != nil {
		return nil, err
	}
	o.sources = append(o.sources, client) // the next reference reuses it
	return client, nil
}

var vaultConfigType = reflect.TypeOf(secrets.Config{})

// findVaultConfig returns the first secrets.Config field of cfg.
func findVaultConfig(v reflect.Value) *secrets.Config {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	if v.Type() == vaultConfigType && v.CanAddr() {
		return v.Addr().Interface().(*secrets.Config)
	}
	for i := range v.NumField() {
		if !v.Type().Field(i).IsExported() {
			continue
		}
		if found := findVaultConfig(v.Field(i)); found != nil {
			return found
		}
	}
	return nil
}

// secretsConfigFromEnv reads the Vault settings of secrets.Config from the
// environment, with their defaults.
func secretsConfigFromEnv() (secrets.Config, error) {
	var wrapper struct{ Vault secrets.Config }
	if _, err := conf.Parse("", &wrapper); err != nil {
		return secrets.Config{}, Invalid(fmt.Errorf("reading the Vault settings: %w", err))
	}
	return wrapper.Vault, nil
}

var secretType = reflect.TypeOf(Secret{})

func walkSecrets(v reflect.Value, path string, fn func(string, *Secret)) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	if v.Type() == secretType {
		fn(path, v.Addr().Interface().(*Secret))
		return
	}
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Name
		if path != "" {
			name = path + "." + name
		}
		walkSecrets(v.Field(i), name, fn)
	}
}

// Secret is a setting whose value must never be printed: database URLs
// with passwords, keys, tokens.
type Secret struct {
	raw    string
	value  string
	source string
}

// NewSecret returns a Secret holding value, for tests and callers that
// build configuration in code.
func NewSecret(value string) Secret { return Secret{raw: value, value: value, source: "code"} }

// Set implements conf's Setter: it stores the raw setting for Load to
// resolve.
func (s *Secret) Set(raw string) error {
	s.raw, s.value, s.source = raw, raw, ""
	return nil
}

// Value returns the secret itself.
func (s Secret) Value() string { return s.value }

// Source says where the value came from: "environment", "code" or the
// reference it was read through.
func (s Secret) Source() string { return s.source }

// String masks the value, so that a Secret printed by accident leaks
// nothing.
func (s Secret) String() string {
	if s.raw == "" {
		return ""
	}
	return "xxxxxx"
}
