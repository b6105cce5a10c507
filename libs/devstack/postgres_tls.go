package devstack

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ensureServerCertificate gives a throwaway Postgres's data directory a
// self-signed certificate for localhost and 127.0.0.1 (server.crt and
// server.key, Postgres's default names, owned by the server's user), so
// that it speaks TLS as a production server does: a client that verifies
// the server uses server.crt as its CA. An existing pair is kept.
func ensureServerCertificate(dataDir string, cred *syscall.Credential) error {
	certFile, keyFile := filepath.Join(dataDir, "server.crt"), filepath.Join(dataDir, "server.key")
	if _, err := os.Stat(certFile); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", certFile, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating the server key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return fmt.Errorf("drawing a serial number: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("signing the server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding the server key: %w", err)
	}
	// Postgres refuses a key that others may read.
	if err := writeOwned(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600, cred); err != nil {
		return err
	}
	return writeOwned(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644, cred)
}

// writeOwned writes data to name with mode perm, owned by cred's user when
// cred is set.
func writeOwned(name string, data []byte, perm os.FileMode, cred *syscall.Credential) error {
	if err := os.WriteFile(name, data, perm); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if cred != nil {
		if err := os.Chown(name, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("handing %s to the postgres user: %w", name, err)
		}
	}
	return nil
}
