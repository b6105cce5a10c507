package stacktest

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to a real server until Cut, which closes
// its listener and every connection through it (the server becomes
// unreachable: connections are refused), and Restore, which listens again
// on the same address. It stands for a network partition or a stopped
// server without losing the server's state.
type Proxy struct {
	tb     testing.TB
	target string
	addr   string

	mu    sync.Mutex
	l     net.Listener
	conns []net.Conn
}

// NewProxy returns a running Proxy to target ("host:port", or a URL whose
// host:port is taken), closed when the test ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	if _, rest, ok := strings.Cut(target, "://"); ok {
		target = strings.TrimSuffix(rest, "/")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("stacktest: proxy: %v", err)
	}
	p := &Proxy{tb: tb, target: target, addr: l.Addr().String()}
	p.serve(l)
	tb.Cleanup(p.Cut)
	return p
}

// Addr is the proxy's "host:port".
func (p *Proxy) Addr() string { return p.addr }

// URL is "http://" + Addr.
func (p *Proxy) URL() string { return "http://" + p.addr }

func (p *Proxy) serve(l net.Listener) {
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				_ = in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); _ = out.Close() }()
			go func() { _, _ = io.Copy(in, out); _ = in.Close() }()
		}
	}()
}

// Cut makes the target unreachable through the proxy.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		_ = p.l.Close()
		p.l = nil
	}
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// Restore makes the target reachable again on the same address.
func (p *Proxy) Restore() {
	p.tb.Helper()
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.tb.Fatalf("stacktest: proxy: listening again on %s: %v", p.addr, err)
	}
	p.serve(l)
}
