package httpserver_test

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/netrules"
)

// holdingServer accepts from l and keeps every connection open after
// writing "hi", until its client closes it (as an HTTP server does with
// an idle keep-alive connection); it returns how many it accepted.
func holdingServer(t *testing.T, l net.Listener) *atomic.Int64 {
	t.Helper()
	var accepted atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer func() { _ = c.Close() }()
				_, _ = c.Write([]byte("hi"))
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() { _ = l.Close(); <-done })
	return &accepted
}

// dialFrom connects to addr from the loopback address local and says
// whether the server kept the connection (it read "hi") or closed it.
func dialFrom(t *testing.T, addr, local string) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
	buf := make([]byte, 2)
	_, err = io.ReadFull(c, buf)
	return c, err == nil && string(buf) == "hi"
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return l
}

func TestPerPeerLimitClosesTheExcessAndFreesOnClose(t *testing.T) {
	t.Parallel()
	var refused atomic.Int64
	l := httpserver.LimitConnections(listen(t), httpserver.ConnLimits{PerPeer: 2, Refused: func() { refused.Add(1) }})
	holdingServer(t, l)
	addr := l.Addr().String()
	first, ok := dialFrom(t, addr, "127.0.0.1")
	require.True(t, ok)
	_, ok = dialFrom(t, addr, "127.0.0.1")
	require.True(t, ok)
	_, ok = dialFrom(t, addr, "127.0.0.1")
	require.False(t, ok, "a third connection from one address is closed")
	require.Equal(t, int64(1), refused.Load())
	_, ok = dialFrom(t, addr, "127.0.0.2")
	require.True(t, ok, "another address has its own share")
	require.NoError(t, first.Close())
	require.Eventually(t, func() bool {
		c, ok := dialFrom(t, addr, "127.0.0.1")
		if !ok {
			return false
		}
		_ = c.Close()
		return true
	}, 5*time.Second, 20*time.Millisecond, "a closed connection gives its address's slot back")
}

func TestExemptPeersHaveNoPerPeerLimit(t *testing.T) {
	t.Parallel()
	trusted, err := netrules.ParsePrefixList("127.0.0.1/32")
	require.NoError(t, err)
	l := httpserver.LimitConnections(listen(t), httpserver.ConnLimits{PerPeer: 1, Exempt: trusted})
	holdingServer(t, l)
	for range 3 {
		_, ok := dialFrom(t, l.Addr().String(), "127.0.0.1")
		require.True(t, ok, "a trusted proxy carries many clients' connections")
	}
	_, ok := dialFrom(t, l.Addr().String(), "127.0.0.2")
	require.True(t, ok)
	_, ok = dialFrom(t, l.Addr().String(), "127.0.0.2")
	require.False(t, ok)
}

func TestTotalLimitMakesTheExcessWait(t *testing.T) {
	t.Parallel()
	l := httpserver.LimitConnections(listen(t), httpserver.ConnLimits{Total: 2})
	accepted := holdingServer(t, l)
	addr := l.Addr().String()
	first, ok := dialFrom(t, addr, "127.0.0.1")
	require.True(t, ok)
	_, ok = dialFrom(t, addr, "127.0.0.1")
	require.True(t, ok)
	// The third connects (the kernel queues it) but is not accepted yet.
	d := net.Dialer{Timeout: 2 * time.Second}
	third, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = third.Close() })
	require.NoError(t, third.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = third.Read(make([]byte, 2))
	var netErr net.Error
	require.True(t, errors.As(err, &netErr) && netErr.Timeout(), "waits while two are open: %v", err)
	require.Equal(t, int64(2), accepted.Load())
	require.NoError(t, first.Close())
	require.NoError(t, third.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 2)
	_, err = io.ReadFull(third, buf)
	require.NoError(t, err, "accepted once a slot is free")
	require.Equal(t, "hi", string(buf))
}

func TestClosingWakesAnAcceptWaitingForASlot(t *testing.T) {
	t.Parallel()
	l := httpserver.LimitConnections(listen(t), httpserver.ConnLimits{Total: 1})
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	held, err := l.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { _ = held.Close() })
	errc := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		errc <- err
	}()
	require.NoError(t, l.Close())
	select {
	case err := <-errc:
		require.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still waits after Close")
	}
}
