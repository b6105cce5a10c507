package logging

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// FlushInterval is the longest a process's log line waits in its buffer
// before it is written.
const FlushInterval = 100 * time.Millisecond

// bufferSize is how many bytes of lines a process's log buffers before it
// writes them at once.
const bufferSize = 64 << 10

// BufferedWriter collects log lines and writes them in batches: when the
// buffer is full, when Flush is called (the process's logger calls it
// for every record at warn level or above, so that errors are never
// held back), and every FlushInterval while Run runs. A gateway writes one
// access-log line per request; written one by one, their write calls cost
// more than the rest of the logging.
//
// What is buffered when a process dies without exiting normally (SIGKILL,
// a crash) is lost: at most FlushInterval of info-level lines.
type BufferedWriter struct {
	mu  sync.Mutex
	out io.Writer
	buf []byte
	err error
}

// NewBufferedWriter returns a BufferedWriter writing to out.
func NewBufferedWriter(out io.Writer) *BufferedWriter {
	return &BufferedWriter{out: out, buf: make([]byte, 0, bufferSize)}
}

// Write buffers p, first writing what is buffered when p does not fit. It
// fails only with the error an earlier write to the output returned.
func (w *BufferedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf)+len(p) > cap(w.buf) {
		w.flushLocked()
	}
	if len(p) > cap(w.buf) {
		if _, err := w.out.Write(p); err != nil && w.err == nil {
			w.err = err
		}
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// Flush writes what is buffered.
func (w *BufferedWriter) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushLocked()
	return w.err
}

func (w *BufferedWriter) flushLocked() {
	if len(w.buf) == 0 {
		return
	}
	if _, err := w.out.Write(w.buf); err != nil && w.err == nil {
		w.err = err
	}
	w.buf = w.buf[:0]
}

// Run flushes every interval until ctx ends, then once more.
func (w *BufferedWriter) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = w.Flush()
			return
		case <-tick.C:
			_ = w.Flush()
		}
	}
}

// flushingHandler flushes its writer after each record at warn level or
// above.
type flushingHandler struct {
	slog.Handler
	w *BufferedWriter
	// access encodes access-log lines (LogAccess) for this handler's
	// exact chain; nil once With or WithGroup changed it, or for text.
	access *accessEncoder
}

func (h flushingHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	h.written(r.Level)
	return err
}

// written writes the buffer out at once after a record at warn or above.
func (h flushingHandler) written(level slog.Level) {
	if level >= slog.LevelWarn {
		_ = h.w.Flush()
	}
}

func (h flushingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushingHandler{Handler: h.Handler.WithAttrs(attrs), w: h.w}
}

func (h flushingHandler) WithGroup(name string) slog.Handler {
	return flushingHandler{Handler: h.Handler.WithGroup(name), w: h.w}
}
