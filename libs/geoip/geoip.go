// Package geoip maps addresses to ISO 3166-1 country codes from a
// MaxMind-format database file (GeoLite2-Country or GeoIP2-Country layout,
// or any .mmdb whose records hold country.iso_code), reloaded when the file
// is replaced. The file is read into memory rather than mapped, so a
// replaced or deleted file never pulls pages from under a lookup.
package geoip

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/switchyard/switchyard/libs/filewatch"
)

// Unknown is the code of an address the database has no country for
// (private ranges, unallocated space): ISO 3166's user-assigned "ZZ".
const Unknown = "ZZ"

// DB is a country database.
type DB struct {
	path   string
	logger *slog.Logger
	reader atomic.Pointer[maxminddb.Reader]
	// watcher notes the file as it was when opened.
	watcher *filewatch.Watcher
	// OnReload, when set before Run, is told each reload's outcome.
	OnReload func(err error)
}

// Open reads the database at path.
func Open(path string, logger *slog.Logger) (*DB, error) {
	db := &DB{path: path, logger: logger, watcher: filewatch.New(path)}
	if err := db.load(); err != nil {
		return nil, err
	}
	return db, nil
}

func (db *DB) load() error {
	data, err := os.ReadFile(db.path)
	if err != nil {
		return fmt.Errorf("reading country database: %w", err)
	}
	r, err := maxminddb.OpenBytes(data)
	if err != nil {
		return fmt.Errorf("country database %s: %w", db.path, err)
	}
	// A quick probe: a database whose records have no country would
	// answer Unknown for everyone, which is better refused at start.
	if !strings.Contains(r.Metadata.DatabaseType, "Country") && !strings.Contains(r.Metadata.DatabaseType, "City") &&
		!strings.Contains(r.Metadata.DatabaseType, "country") {
		db.warn("country database type is unusual; lookups read country.iso_code", "type", r.Metadata.DatabaseType)
	}
	db.reader.Store(r)
	return nil
}

func (db *DB) warn(msg string, args ...any) {
	if db.logger != nil {
		db.logger.Warn(msg, args...)
	}
}

// Run reloads the database when the file changes, checking every
// interval, until ctx ends (it blocks); a bad file is logged and the old
// data kept.
func (db *DB) Run(ctx context.Context, interval time.Duration) {
	db.watcher.Run(ctx, interval, func() {
		err := db.load()
		if err != nil {
			db.warn("country database not reloaded; the previous one stays in use", "path", db.path, "error", err)
		} else if db.logger != nil {
			db.logger.Info("country database reloaded", "path", db.path, "built", db.reader.Load().Metadata.BuildTime())
		}
		if db.OnReload != nil {
			db.OnReload(err)
		}
	})
}

// Country returns the ISO code (upper case) of a, or Unknown.
func (db *DB) Country(a netip.Addr) string {
	if !a.IsValid() {
		return Unknown
	}
	r := db.reader.Load()
	res := r.Lookup(a.Unmap())
	if !res.Found() {
		return Unknown
	}
	var rec struct {
		Country struct {
			ISOCode string `maxminddb:"iso_code"`
		} `maxminddb:"country"`
		RegisteredCountry struct {
			ISOCode string `maxminddb:"iso_code"`
		} `maxminddb:"registered_country"`
	}
	if err := res.Decode(&rec); err != nil {
		return Unknown
	}
	code := rec.Country.ISOCode
	if code == "" {
		code = rec.RegisteredCountry.ISOCode
	}
	if !ValidCode(code) {
		return Unknown
	}
	return strings.ToUpper(code)
}

// ValidCode reports whether s is two ASCII letters.
func ValidCode(s string) bool {
	if len(s) != 2 {
		return false
	}
	for i := range 2 {
		c := s[i] | 0x20
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}
