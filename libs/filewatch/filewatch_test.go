package filewatch

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWatchSeesWritesAndRenames(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	require.NoError(t, os.WriteFile(p, []byte("one"), 0o600))
	var n atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go New(p).Run(ctx, 10*time.Millisecond, func() { n.Add(1) })

	require.NoError(t, os.WriteFile(p, []byte("two!"), 0o600))
	require.Eventually(t, func() bool { return n.Load() == 1 }, 5*time.Second, 5*time.Millisecond)

	// An atomic replace with the same size and a preserved mtime is still
	// another inode.
	fi, err := os.Stat(p)
	require.NoError(t, err)
	tmp := filepath.Join(dir, "f.tmp")
	require.NoError(t, os.WriteFile(tmp, []byte("thr!"), 0o600))
	require.NoError(t, os.Chtimes(tmp, fi.ModTime(), fi.ModTime()))
	require.NoError(t, os.Rename(tmp, p))
	require.Eventually(t, func() bool { return n.Load() == 2 }, 5*time.Second, 5*time.Millisecond)

	require.NoError(t, os.Remove(p))
	require.Eventually(t, func() bool { return n.Load() == 3 }, 5*time.Second, 5*time.Millisecond)
}
