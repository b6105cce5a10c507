package logging

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lockedBuffer is an output that a test can read while a writer writes.
type lockedBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writes++
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestBufferedLoggerHoldsInfoAndWritesWarningsAtOnce: info lines wait in
// the buffer and go out together; a warning is written at once with
// everything before it, in order; Run writes what waits.
func TestBufferedLoggerHoldsInfoAndWritesWarningsAtOnce(t *testing.T) {
	out := &lockedBuffer{}
	w := NewBufferedWriter(out)
	logger, _ := newBuffered(w, "svc", "info", "json")

	for i := range 100 {
		logger.Info("http request", "n", i)
	}
	require.Empty(t, out.String(), "info lines wait for the buffer")
	logger.Warn("something is wrong")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 101)
	require.Contains(t, lines[100], "something is wrong")
	require.Contains(t, lines[0], `"n":0`)
	require.Equal(t, 1, out.writes, "one write for all of them")

	logger.Info("later")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx, time.Millisecond); close(done) }()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "later") }, 5*time.Second, time.Millisecond)
	cancel()
	<-done
}

// TestBufferedWriterWritesWhenFull: a line that does not fit writes what
// waits first; a line larger than the buffer goes straight through;
// nothing is lost or reordered.
func TestBufferedWriterWritesWhenFull(t *testing.T) {
	out := &lockedBuffer{}
	w := NewBufferedWriter(out)
	line := []byte(strings.Repeat("x", 1000) + "\n")
	var want bytes.Buffer
	for range 200 { // 200 kB through a 64 KiB buffer
		_, err := w.Write(line)
		require.NoError(t, err)
		want.Write(line)
	}
	require.Greater(t, out.writes, 0)
	huge := []byte(strings.Repeat("y", bufferSize+1) + "\n")
	_, err := w.Write(huge)
	require.NoError(t, err)
	want.Write(huge)
	require.NoError(t, w.Flush())
	require.Equal(t, want.String(), out.String())
	require.LessOrEqual(t, out.writes, 200*1000/bufferSize+3)
}
