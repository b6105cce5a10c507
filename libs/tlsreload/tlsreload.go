// Package tlsreload serves TLS from certificate and key files that may be
// replaced while the server runs (cert-manager, ACME, a Vault PKI agent):
// new handshakes get the new certificate once both files are readable and
// match, connections already open keep theirs, nothing restarts. A bad
// replacement (half-written, mismatched key) is logged and counted, and the
// last good certificate stays in use. Optional client-certificate
// verification (mTLS) uses a CA bundle reloaded the same way.
package tlsreload

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/libs/filewatch"
)

// Files says where a listener's certificate comes from.
type Files struct {
	// CertFile and KeyFile are PEM files: the certificate chain (leaf
	// first) and its private key.
	CertFile, KeyFile string
	// ClientCAFile, when set, makes client certificates mandatory: they
	// must chain to a CA in this PEM bundle.
	ClientCAFile string
}

// Enabled reports whether TLS is configured.
func (f Files) Enabled() bool { return f.CertFile != "" || f.KeyFile != "" }

// Validate reports a half-configured setup.
func (f Files) Validate() error {
	switch {
	case (f.CertFile == "") != (f.KeyFile == ""):
		return errors.New("TLS needs both a certificate file and a key file")
	case f.ClientCAFile != "" && f.CertFile == "":
		return errors.New("client certificate verification (a client CA file) needs TLS (a certificate and key)")
	}
	return nil
}

// Metrics count reloads; share one across a process's listeners.
type Metrics struct {
	reloads *prometheus.CounterVec
	expiry  *prometheus.GaugeVec
}

// NewMetrics registers the reload metrics with reg (none when nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_tls_reloads_total",
			Help: "Certificate file reloads by listener and outcome (ok, failed: the previous certificate stays).",
		}, []string{"listener", "outcome"}),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchyard_tls_certificate_expiry_timestamp_seconds",
			Help: "When the certificate a listener serves expires (Unix time).",
		}, []string{"listener"}),
	}
	if reg != nil {
		reg.MustRegister(m.reloads, m.expiry)
	}
	return m
}

// Certificate is the current certificate of one listener.
type Certificate struct {
	name    string
	files   Files
	logger  *slog.Logger
	metrics *Metrics
	cert    atomic.Pointer[tls.Certificate]
	pool    atomic.Pointer[x509.CertPool]
	// watcher notes the files as they were when loaded.
	watcher *filewatch.Watcher
}

// Load reads files for the listener called name; the error explains a
// missing or bad file.
func Load(name string, files Files, metrics *Metrics, logger *slog.Logger) (*Certificate, error) {
	if err := files.Validate(); err != nil {
		return nil, err
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	c := &Certificate{name: name, files: files, logger: logger, metrics: metrics}
	paths := []string{files.CertFile, files.KeyFile}
	if files.ClientCAFile != "" {
		paths = append(paths, files.ClientCAFile)
	}
	c.watcher = filewatch.New(paths...)
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Certificate) reload() error {
	pair, err := tls.LoadX509KeyPair(c.files.CertFile, c.files.KeyFile)
	if err != nil {
		return fmt.Errorf("loading TLS certificate %s with key %s: %w", c.files.CertFile, c.files.KeyFile, err)
	}
	if pair.Leaf != nil && time.Now().After(pair.Leaf.NotAfter) {
		return fmt.Errorf("TLS certificate %s expired at %s", c.files.CertFile, pair.Leaf.NotAfter.Format(time.RFC3339))
	}
	var pool *x509.CertPool
	if c.files.ClientCAFile != "" {
		pem, err := os.ReadFile(c.files.ClientCAFile)
		if err != nil {
			return fmt.Errorf("reading client CA file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("client CA file %s holds no PEM certificate", c.files.ClientCAFile)
		}
	}
	c.cert.Store(&pair)
	if pool != nil {
		c.pool.Store(pool)
	}
	if pair.Leaf != nil {
		c.metrics.expiry.WithLabelValues(c.name).Set(float64(pair.Leaf.NotAfter.Unix()))
	}
	return nil
}

// Run reloads the files when they change, checking every interval,
// until ctx ends (it blocks).
func (c *Certificate) Run(ctx context.Context, interval time.Duration) {
	c.watcher.Run(ctx, interval, func() {
		if err := c.reload(); err != nil {
			c.metrics.reloads.WithLabelValues(c.name, "failed").Inc()
			c.logger.Error("TLS certificate not reloaded; the previous one stays in use", "listener", c.name, "error", err)
			return
		}
		c.metrics.reloads.WithLabelValues(c.name, "ok").Inc()
		leaf := c.cert.Load().Leaf
		c.logger.Info("TLS certificate reloaded", "listener", c.name, "subject", leaf.Subject.String(),
			"serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter)
	})
}

// Current is the certificate new handshakes get.
func (c *Certificate) Current() *tls.Certificate { return c.cert.Load() }

// Config is the server TLS configuration: TLS 1.2 or later, AEAD cipher
// suites with forward secrecy only for 1.2 (1.3's are all of that kind),
// the current certificate per handshake, and client certificates verified
// against the current CA bundle when one is configured. HTTP/2 and
// HTTP/1.1 are offered (ALPN).
func (c *Certificate) Config() *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cert.Load(), nil },
		// Named here, not left to ServeTLS, so that the per-client copy
		// below offers HTTP/2 too.
		NextProtos: []string{"h2", "http/1.1"},
	}
	if c.files.ClientCAFile != "" {
		// The pool is read per handshake, so a rotated CA bundle applies to
		// new connections at once.
		cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			per := cfg.Clone()
			per.GetConfigForClient = nil
			per.ClientAuth = tls.RequireAndVerifyClientCert
			per.ClientCAs = c.pool.Load()
			return per, nil
		}
	}
	return cfg
}
