package authn_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/authn"
)

func TestBearerToken(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", authn.MaxTokenBytes+1)
	tests := []struct {
		header string
		token  string
		kind   error
		reason authn.Reason
	}{
		{"Bearer abc.def.ghi", "abc.def.ghi", nil, ""},
		{"bearer abc", "abc", nil, ""}, // the scheme is case-insensitive (RFC 7235)
		{"BEARER abc", "abc", nil, ""},
		{"Bearer   abc==", "abc==", nil, ""},
		{"", "", authn.ErrNoCredentials, "missing"},
		{"Bearer", "", authn.ErrUnauthenticated, "malformed"},
		{"Bearer ", "", authn.ErrUnauthenticated, "malformed"},
		{"Basic dXNlcjpwYXNz", "", authn.ErrUnauthenticated, "wrong_scheme"},
		{"Bearer a b", "", authn.ErrUnauthenticated, "malformed"},
		{"Bearer a=b", "", authn.ErrUnauthenticated, "malformed"},
		{"Bearer a\x00", "", authn.ErrUnauthenticated, "malformed"},
		{"Bearer " + long, "", authn.ErrUnauthenticated, "too_large"},
		{"Bearer " + strings.Repeat("a", 1<<20), "", authn.ErrUnauthenticated, "too_large"},
	}
	for _, tt := range tests {
		got, err := authn.BearerToken(tt.header)
		name := tt.header
		if len(name) > 40 {
			name = name[:40]
		}
		if tt.kind == nil {
			require.NoError(t, err, name)
			require.Equal(t, tt.token, got, name)
			continue
		}
		require.ErrorIs(t, err, tt.kind, name)
		require.Equal(t, tt.reason, authn.ReasonOf(err), name)
	}
}

// FuzzBearerToken: any header value gives either a token that is a
// b64token no longer than MaxTokenBytes, or a classified error.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer a.b.c", "", "Bearer", "Bearer  x==", "Basic x", "Bearer a b", "Bearer \xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, err := authn.BearerToken(header)
		if err != nil {
			if !errors.Is(err, authn.ErrNoCredentials) && !errors.Is(err, authn.ErrUnauthenticated) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if tok == "" || len(tok) > authn.MaxTokenBytes || strings.ContainsAny(tok, " \t\r\n,\"") {
			t.Fatalf("accepted token %q from %q", tok, header)
		}
		if !strings.HasSuffix(header, tok) {
			t.Fatalf("token %q is not the end of the header %q", tok, header)
		}
	})
}
