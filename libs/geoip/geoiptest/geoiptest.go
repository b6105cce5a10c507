// Package geoiptest writes small country databases in the GeoLite2-Country
// layout for tests, with MaxMind's own writer.
package geoiptest

import (
	"net"
	"os"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Write puts a database mapping each CIDR to a country code at path,
// replacing the file atomically (as a database updater does).
func Write(tb testing.TB, path string, countries map[string]string) {
	tb.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-Country", RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		tb.Fatal(err)
	}
	for cidr, code := range countries {
		_, network, err := net.ParseCIDR(cidr)
		if err != nil {
			tb.Fatal(err)
		}
		rec := mmdbtype.Map{
			"country":            mmdbtype.Map{"iso_code": mmdbtype.String(code)},
			"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String(code)},
		}
		if err := w.Insert(network, rec); err != nil {
			tb.Fatal(err)
		}
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp) //nolint:gosec // the test's own temporary path
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// WriteRaw puts bytes at path.
func WriteRaw(tb testing.TB, path string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
}
