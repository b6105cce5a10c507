package termsafe_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/termsafe"
)

func TestString(t *testing.T) {
	cases := map[string]string{
		"plain text, tabs\tand\nnewlines":     "plain text, tabs\tand\nnewlines",
		"clear screen \x1b[2J\x1b[H":          `clear screen \u001b[2J\u001b[H`,
		"title \x1b]0;pwned\x07":              `title \u001b]0;pwned\u0007`,
		"carriage\rreturn and back\bspace":    `carriage\u000dreturn and back\u0008space`,
		"8-bit CSI \u009b31m":                 `8-bit CSI \u009b31m`,
		"bidi \u202eevil\u202c":               `bidi \u202eevil\u202c`,
		"not UTF-8 \xff\xfe":                  `not UTF-8 \xff\xfe`,
		"unicode é ✓ and a real \ufffd stays": "unicode é ✓ and a real \ufffd stays",
		"del \x7f":                            `del \u007f`,
	}
	for in, want := range cases {
		require.Equal(t, want, termsafe.String(in), "%q", in)
	}
}

// TestWriterKeepsJSONValid: escaping a JSON document's raw control
// characters leaves JSON that decodes to the same value.
func TestWriterKeepsJSONValid(t *testing.T) {
	doc, err := json.Marshal(map[string]string{"payload": "a\u009b31mb\u202ec"})
	require.NoError(t, err)
	var out bytes.Buffer
	w := termsafe.NewWriter(&out)
	// Split in the middle of the two-byte U+009B.
	i := bytes.Index(doc, []byte("\u009b")) + 1
	_, err = w.Write(doc[:i])
	require.NoError(t, err)
	_, err = w.Write(doc[i:])
	require.NoError(t, err)
	require.NoError(t, w.Flush())
	require.NotContains(t, out.String(), "\u009b")
	var back map[string]string
	require.NoError(t, json.Unmarshal(out.Bytes(), &back), out.String())
	require.Equal(t, "a\u009b31mb\u202ec", back["payload"])
}

func FuzzString(f *testing.F) {
	f.Add("\x1b[31mred\x1b[0m\u009b\u202e")
	f.Fuzz(func(t *testing.T, s string) {
		out := termsafe.String(s)
		for _, r := range out {
			if r == 0x1b || r == '\r' || r == 0x07 || r == 0x08 || (r >= 0x80 && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) {
				t.Fatalf("%q escaped to %q still holds %U", s, out, r)
			}
		}
	})
}
