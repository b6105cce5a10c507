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

// Watcher remembers how some files were and notices when they change.
type Watcher struct {
	paths []string
	last  []stamp
}

// New notes how paths are now: call it right after reading the files, so
// that a change made after the read is one Run sees.
func New(paths ...string) *Watcher {
	w := &Watcher{paths: paths, last: make([]stamp, len(paths))}
	for i, p := range paths {
		w.last[i] = stat(p)
	}
	return w
}

// Run calls changed whenever any file differs from what it was at the
// previous poll, polling every interval, until ctx ends (it blocks, as
// every background loop here does). A file that disappears counts as a
// change too; changed decides what that means (keeping what it has,
// typically).
func (w *Watcher) Run(ctx context.Context, interval time.Duration, changed func()) {
	paths, last := w.paths, w.last
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
