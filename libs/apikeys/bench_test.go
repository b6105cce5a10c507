package apikeys_test

import (
	"testing"

	"github.com/switchyard/switchyard/libs/apikeys"
)

// BenchmarkAuthenticate is the cost of checking one key in a gateway's
// set: a known key, and a random one (same shape, unknown id).
func BenchmarkAuthenticate(b *testing.B) {
	f := newFixture(b)
	c := f.client(b, "jobs:read")
	key, _, err := f.store.Create(b.Context(), apikeys.NewKey{ClientID: c.ID, ClientScopes: c.Scopes})
	if err != nil {
		b.Fatal(err)
	}
	set := f.set(b, apikeys.SetOptions{Revoked: func(string) (bool, error) { return false, nil }})
	random, _, err := apikeys.Generate()
	if err != nil {
		b.Fatal(err)
	}
	for name, k := range map[string]string{"known": key, "random": random} {
		b.Run(name, func(b *testing.B) {
			r := request(apikeys.HeaderName, k, "")
			b.ReportAllocs()
			for b.Loop() {
				_, _ = set.Authenticate(r)
			}
		})
	}
}
