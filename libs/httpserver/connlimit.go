package httpserver

import (
	"net"
	"net/netip"
	"sync"

	"github.com/switchyard/switchyard/libs/netrules"
)

// ConnLimits bounds the connections a listener keeps open. An open
// connection costs its server a goroutine and its buffers (~20 KiB) for as
// long as it stays open, idle keep-alive ones included, so without a bound
// anyone who can connect decides how much memory the process holds.
type ConnLimits struct {
	// Total is the most connections open at once; more wait in the
	// kernel's accept queue, costing the process nothing, until one
	// closes. 0: no limit.
	Total int
	// PerPeer is the most connections open at once from one TCP peer
	// (IPv6: per prefix of IPv6PrefixBits); one more is closed as soon as
	// it is accepted, so that one source cannot take every slot. 0: no
	// limit.
	PerPeer        int
	IPv6PrefixBits int
	// Exempt peers (the trusted proxies, whose connections carry many
	// clients) have no per-peer limit.
	Exempt netrules.PrefixList
	// Refused, when set, is called for each connection closed because its
	// peer had PerPeer open (for a metric).
	Refused func()
}

// LimitConnections returns l with lim applied to the connections it
// accepts. Closing the returned listener wakes an Accept waiting for a
// slot.
func LimitConnections(l net.Listener, lim ConnLimits) net.Listener {
	if lim.Total <= 0 && lim.PerPeer <= 0 {
		return l
	}
	ll := &limitListener{Listener: l, lim: lim, done: make(chan struct{}), peers: map[string]int{}}
	if lim.Total > 0 {
		ll.slots = make(chan struct{}, lim.Total)
	}
	return ll
}

type limitListener struct {
	net.Listener
	lim       ConnLimits
	slots     chan struct{} // one element per open connection; nil: no total limit
	done      chan struct{}
	closeOnce sync.Once
	mu        sync.Mutex
	peers     map[string]int // open connections per peer key (only peers with some)
}

// Accept waits for a slot, then returns the next connection whose peer is
// within its limit.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		if l.slots != nil {
			select {
			case l.slots <- struct{}{}:
			case <-l.done:
				return nil, net.ErrClosed
			}
		}
		c, err := l.Listener.Accept()
		if err != nil {
			l.releaseSlot()
			return nil, err
		}
		key, counted := l.peerKey(c)
		if counted && !l.takePeer(key) {
			_ = c.Close()
			l.releaseSlot()
			if l.lim.Refused != nil {
				l.lim.Refused()
			}
			continue
		}
		return &limitedConn{Conn: c, release: func() {
			if counted {
				l.releasePeer(key)
			}
			l.releaseSlot()
		}}, nil
	}
}

// Close closes the listener and wakes an Accept waiting for a slot.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// peerKey names c's peer for its limit; counted is false when peers are
// not limited or this one is exempt.
func (l *limitListener) peerKey(c net.Conn) (key string, counted bool) {
	if l.lim.PerPeer <= 0 {
		return "", false
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String(), true
	}
	addr := ap.Addr().Unmap().WithZone("")
	if l.lim.Exempt.Len() > 0 && l.lim.Exempt.Contains(addr) {
		return "", false
	}
	return netrules.AddrKey(addr, l.lim.IPv6PrefixBits), true
}

func (l *limitListener) takePeer(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.peers[key] >= l.lim.PerPeer {
		return false
	}
	l.peers[key]++
	return true
}

func (l *limitListener) releasePeer(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.peers[key] <= 1 {
		delete(l.peers, key)
		return
	}
	l.peers[key]--
}

func (l *limitListener) releaseSlot() {
	if l.slots != nil {
		<-l.slots
	}
}

// limitedConn gives its slots back once, when it is first closed.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
