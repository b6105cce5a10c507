// Package logging builds the structured logger every Switchyard process
// uses: log/slog, JSON lines on stderr by default, with the service name on
// every line and the level set by SWITCHYARD_LOG_LEVEL.
package logging

import (
	"io"
	"log/slog"
	"os"
	"strings"
)

// Environment variables read by New.
const (
	EnvLevel  = "SWITCHYARD_LOG_LEVEL"  // debug, info (default), warn, error
	EnvFormat = "SWITCHYARD_LOG_FORMAT" // json (default) or text
)

// New returns a logger for service writing to stderr, and the LevelVar
// that controls it, so the level can be changed while running.
func New(service string) (*slog.Logger, *slog.LevelVar) {
	return NewTo(os.Stderr, service, os.Getenv(EnvLevel), os.Getenv(EnvFormat))
}

// NewTo is New with explicit output, level and format.
func NewTo(w io.Writer, service, level, format string) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	if err := lv.UnmarshalText([]byte(strings.TrimSpace(level))); err != nil || level == "" {
		lv.Set(slog.LevelInfo)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	if strings.EqualFold(format, "text") {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h).With("service", service), lv
}
