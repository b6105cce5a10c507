package tlsreload

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/httpserver"
)

// serve runs an HTTPS server on c until the test ends and returns its
// address.
func serve(t *testing.T, c *Certificate) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, r.Proto)
		}),
		TLSConfig:         c.Config(),
		ReadHeaderTimeout: 5 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- httpserver.Serve(ctx, srv, l, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return l.Addr().String()
}

// TestReloadUnderLoad: the certificate files are replaced while HTTP/1.1
// and HTTP/2 clients send requests without pause, some on fresh
// connections and some on kept-alive ones. No request fails, and new
// connections get the new certificate.
func TestReloadUnderLoad(t *testing.T) {
	ca := stacktest.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := ca.Issue(false, "127.0.0.1", "localhost")
	first.Write(t, certFile, keyFile)
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	c, err := Load("public", Files{CertFile: certFile, KeyFile: keyFile}, metrics, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx, 20*time.Millisecond)
	addr := serve(t, c)

	clients := map[string]*http.Client{}
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		for _, keepAlive := range []bool{true, false} {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}, DisableKeepAlives: !keepAlive}
			tr.Protocols = new(http.Protocols)
			if proto == "HTTP/2.0" {
				tr.Protocols.SetHTTP2(true)
			} else {
				tr.Protocols.SetHTTP1(true)
			}
			name := proto
			if !keepAlive {
				name += " new connections"
			}
			clients[name] = &http.Client{Transport: tr, Timeout: 10 * time.Second}
		}
	}

	second := ca.Issue(false, "127.0.0.1", "localhost")
	var failures, requests atomic.Int64
	var seenNew atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for name, client := range clients {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("https://" + addr + "/")
				requests.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("%s: %v", name, err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				want := "HTTP/1.1"
				if name[:6] == "HTTP/2" {
					want = "HTTP/2.0"
				}
				if resp.StatusCode != http.StatusOK || string(body) != want {
					failures.Add(1)
					t.Errorf("%s: %d %q", name, resp.StatusCode, body)
				}
				if resp.TLS.PeerCertificates[0].SerialNumber.Cmp(second.Serial) == 0 {
					seenNew.Store(true)
				}
			}
		})
	}
	require.Eventually(t, func() bool { return requests.Load() > 200 }, 30*time.Second, 10*time.Millisecond)
	second.Write(t, certFile, keyFile)
	require.Eventually(t, seenNew.Load, 10*time.Second, 10*time.Millisecond, "a new connection gets the new certificate")
	before := requests.Load()
	require.Eventually(t, func() bool { return requests.Load() > before+200 }, 30*time.Second, 10*time.Millisecond)
	close(stop)
	wg.Wait()
	assert.Zero(t, failures.Load(), "of %d requests", requests.Load())
	assert.GreaterOrEqual(t, testutil.ToFloat64(metrics.reloads.WithLabelValues("public", "ok")), 1.0)
	t.Logf("%d requests, %d failed, across the rotation", requests.Load(), failures.Load())
}

// TestBadReplacementKeepsTheOldCertificate: a key that does not match is
// refused, counted, and the old certificate stays.
func TestBadReplacementKeepsTheOldCertificate(t *testing.T) {
	ca := stacktest.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	good := ca.Issue(false, "127.0.0.1")
	good.Write(t, certFile, keyFile)
	metrics := NewMetrics(nil)
	c, err := Load("public", Files{CertFile: certFile, KeyFile: keyFile}, metrics, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx, 10*time.Millisecond)
	other := ca.Issue(false, "127.0.0.1")
	require.NoError(t, os.WriteFile(keyFile, other.KeyPEM, 0o600))
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(metrics.reloads.WithLabelValues("public", "failed")) >= 1
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 0, c.Current().Leaf.SerialNumber.Cmp(good.Serial))
}

// TestClientCertificates: with a client CA, a client without a
// certificate, or with one from another CA, cannot connect; one with a
// certificate from the CA can, over HTTP/2.
func TestClientCertificates(t *testing.T) {
	ca := stacktest.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.Issue(false, "127.0.0.1").Write(t, certFile, keyFile)
	clientCA := stacktest.NewCA(t)
	c, err := Load("admin", Files{CertFile: certFile, KeyFile: keyFile, ClientCAFile: clientCA.WriteCA(dir, "clients.pem")}, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	addr := serve(t, c)

	get := func(cert *tls.Certificate) (string, error) {
		cfg := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	_, err = get(nil)
	require.Error(t, err, "no client certificate")
	stranger := stacktest.NewCA(t).Issue(true, "stranger")
	sc, err := tls.X509KeyPair(stranger.CertPEM, stranger.KeyPEM)
	require.NoError(t, err)
	_, err = get(&sc)
	require.Error(t, err, "a certificate from another CA")
	op := clientCA.Issue(true, "operator")
	oc, err := tls.X509KeyPair(op.CertPEM, op.KeyPEM)
	require.NoError(t, err)
	proto, err := get(&oc)
	require.NoError(t, err)
	assert.Equal(t, "HTTP/2.0", proto)
}

func TestFilesValidate(t *testing.T) {
	assert.NoError(t, Files{}.Validate())
	assert.Error(t, Files{CertFile: "a"}.Validate())
	assert.Error(t, Files{ClientCAFile: "a"}.Validate())
	_, err := Load("x", Files{CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key"}, nil, slog.Default())
	require.Error(t, err)
	assert.True(t, errors.Is(err, os.ErrNotExist))
}
