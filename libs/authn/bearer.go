package authn

import "strings"

// MaxTokenBytes bounds the length of a bearer token; longer ones are
// refused before any parsing. Real access tokens, Azure AD's with many
// claims included, stay well below 8 KiB.
const MaxTokenBytes = 8 << 10

// BearerToken extracts the token from an Authorization header value as
// RFC 6750 §2.1 defines it: the scheme "Bearer" (case-insensitive, RFC
// 7235 §2.1), one or more spaces, and a b64token. It returns an error
// wrapping ErrNoCredentials for an empty header and ErrUnauthenticated for
// anything malformed.
func BearerToken(header string) (string, error) {
	if header == "" {
		return "", Fail(ErrNoCredentials, "missing", "no Authorization header")
	}
	if len(header) > MaxTokenBytes+len("Bearer ")+16 {
		return "", Fail(ErrUnauthenticated, "too_large", "the Authorization header is longer than %d bytes", MaxTokenBytes)
	}
	scheme, rest, ok := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", Fail(ErrUnauthenticated, "wrong_scheme", "the Authorization scheme must be Bearer")
	}
	if !ok {
		return "", Fail(ErrUnauthenticated, "malformed", "no token after Bearer")
	}
	token := strings.TrimLeft(rest, " ")
	if token == "" {
		return "", Fail(ErrUnauthenticated, "malformed", "no token after Bearer")
	}
	if len(token) > MaxTokenBytes {
		return "", Fail(ErrUnauthenticated, "too_large", "the token is longer than %d bytes", MaxTokenBytes)
	}
	if !isB64Token(token) {
		return "", Fail(ErrUnauthenticated, "malformed", "the token has characters a bearer token cannot have")
	}
	return token, nil
}

// b64tokenChar marks ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/".
var b64tokenChar = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()

// isB64Token reports whether s is 1*( ALPHA / DIGIT / "-" / "." / "_" /
// "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for i < len(s) && b64tokenChar[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}
