package stacktest

import (
	"bytes"
	"sync"
)

// Buffer collects output that several goroutines or processes write at
// once (a logger shared by concurrent handlers, the services dev up
// runs), for a test to read while they still write.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
