// Package termsafe keeps text that came from elsewhere (job payloads,
// error messages, client names) from driving the terminal it is printed
// on: control characters, which can move the cursor, rewrite what is on
// screen, set the window title or, on some terminals, answer back as
// typed input, are printed as visible escapes instead.
//
// Escaped are the C0 controls other than tab and newline (ESC, CR, BEL,
// backspace...), DEL, the C1 controls (U+0080-U+009F: CSI, OSC... on
// terminals that take 8-bit controls), and the bidirectional overrides
// and isolates (U+202A-U+202E, U+2066-U+2069) that make text read other
// than it is. Each becomes \uXXXX, so JSON stays valid JSON with the same
// meaning (such characters can only stand inside its strings), and bytes
// that are not UTF-8 become \xXX.
package termsafe

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// unsafe reports whether r must not reach a terminal as it is.
func unsafe(r rune) bool {
	switch {
	case r == '\t' || r == '\n':
		return false
	case r < 0x20 || r == 0x7f:
		return true
	case r >= 0x80 && r <= 0x9f:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// String returns s with every unsafe character escaped.
func String(s string) string {
	clean := true
	for i, r := range s {
		if unsafe(r) || (r == utf8.RuneError && !validAt(s, i)) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafe(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// validAt reports whether the RuneError at i is a real U+FFFD.
func validAt(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size == 3
}

// Writer escapes unsafe characters in everything written through it. A
// UTF-8 sequence split between two writes is held back until it is
// complete (or Flush is called).
type Writer struct {
	w       io.Writer
	pending []byte
}

// NewWriter returns a Writer to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write implements io.Writer; it reports len(p) when everything was
// passed on.
func (t *Writer) Write(p []byte) (int, error) {
	data := p
	if len(t.pending) > 0 {
		data = append(append([]byte(nil), t.pending...), p...)
		t.pending = nil
	}
	// Hold back an incomplete sequence at the end.
	if cut := incompleteTail(data); cut > 0 {
		t.pending = append([]byte(nil), data[len(data)-cut:]...)
		data = data[:len(data)-cut]
	}
	if _, err := io.WriteString(t.w, String(string(data))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes out a held-back partial sequence (escaped).
func (t *Writer) Flush() error {
	if len(t.pending) == 0 {
		return nil
	}
	_, err := io.WriteString(t.w, String(string(t.pending)))
	t.pending = nil
	return err
}

// Unwrap returns the writer underneath, for output that must pass as it
// is (a child process's own terminal output).
func (t *Writer) Unwrap() io.Writer { return t.w }

// Raw returns w's underlying writer when w is a Writer, else w.
func Raw(w io.Writer) io.Writer {
	if t, ok := w.(*Writer); ok {
		return t.w
	}
	return w
}

// incompleteTail is the length of a UTF-8 sequence begun but not finished
// at the end of b (0 when b ends on a whole rune or on invalid bytes).
func incompleteTail(b []byte) int {
	for n := 1; n <= 3 && n <= len(b); n++ {
		c := b[len(b)-n]
		if c < 0x80 {
			return 0
		}
		if c >= 0xc0 { // a lead byte
			need := 2
			switch {
			case c >= 0xf0:
				need = 4
			case c >= 0xe0:
				need = 3
			}
			if need > n {
				return n
			}
			return 0
		}
	}
	return 0
}
