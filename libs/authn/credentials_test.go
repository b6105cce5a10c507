package authn_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/authn"
)

// named answers with its name as the client id.
type named string

func (n named) Authenticate(*http.Request) (authn.Identity, error) {
	return authn.Identity{ClientID: string(n)}, nil
}

func TestCredentialsChoosesByWhatTheRequestCarries(t *testing.T) {
	t.Parallel()
	both := authn.Credentials{Bearer: named("bearer"), APIKey: named("key")}
	bearerOnly := authn.Credentials{Bearer: named("bearer")}
	keysOnly := authn.Credentials{APIKey: named("key")}
	req := func(h ...string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for i := 0; i+1 < len(h); i += 2 {
			r.Header.Set(h[i], h[i+1])
		}
		return r
	}
	for _, c := range []struct {
		name   string
		a      authn.Credentials
		r      *http.Request
		want   string
		reason authn.Reason
	}{
		{"bearer to both", both, req("Authorization", "Bearer t"), "bearer", ""},
		{"X-API-Key to both", both, req("X-API-Key", "k"), "key", ""},
		{"ApiKey scheme to both", both, req("Authorization", "apikey k"), "key", ""},
		{"nothing to both goes to bearer", both, req(), "bearer", ""},
		{"key to bearer only", bearerOnly, req("X-API-Key", "k"), "", "api_key_not_accepted"},
		{"ApiKey scheme to bearer only", bearerOnly, req("Authorization", "ApiKey k"), "", "api_key_not_accepted"},
		{"bearer to keys only", keysOnly, req("Authorization", "Bearer t"), "", "bearer_not_accepted"},
		{"nothing to keys only", keysOnly, req(), "", "missing"},
	} {
		id, err := c.a.Authenticate(c.r)
		if c.reason != "" {
			require.Error(t, err, c.name)
			require.Equal(t, c.reason, authn.ReasonOf(err), c.name)
			continue
		}
		require.NoError(t, err, c.name)
		require.Equal(t, c.want, id.ClientID, c.name)
	}
}
