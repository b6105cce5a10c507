// Package filewatch notices when files change, by polling their metadata.
// Polling rather than inotify works the same for an editor's write, an
// atomic rename, a Kubernetes Secret's symlink swap and a network volume,
// and costs one stat per file per interval.
package filewatch

import (
	"context"
	"os"
	"time"
)

// stamp is what a change alters: size, modification time, or the file
// itself (a rename or symlink swap gives another inode).
type stamp struct {
	size  int64
	mod   time.Time
	inode uint64
	found bool
}

func stat(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{size: fi.Size(), mod: fi.ModTime(), inode: inodeOf(fi), found: true}
}

// Start notes how paths are now, then, in a goroutine until ctx ends,
// calls changed whenever any of them differs from what it was at the
// previous poll, every interval. Call it right after reading the files.
// A file that disappears counts as a change too; changed decides what
// that means (keeping what it has, typically).
func Start(ctx context.Context, interval time.Duration, paths []string, changed func()) {
	last := make([]stamp, len(paths))
	for i, p := range paths {
		last[i] = stat(p)
	}
	go watch(ctx, interval, paths, last, changed)
}

func watch(ctx context.Context, interval time.Duration, paths []string, last []stamp, changed func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		differs := false
		for i, p := range paths {
			s := stat(p)
			if s != last[i] {
				differs = true
				last[i] = s
			}
		}
		if differs {
			changed()
		}
	}
}
