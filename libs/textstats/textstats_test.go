package textstats_test

import (
	"bufio"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/textstats"
)

func TestAnalyse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text         string
		words, lines int
	}{
		{"", 0, 0},
		{"one", 1, 1},
		{"one two\n", 2, 1},
		{"one two\nthree", 3, 2},
		{"  spaced   out  \n\n tabs\there\n", 4, 3},
	}
	for _, tt := range tests {
		got := textstats.Analyse(tt.text)
		require.Equal(t, tt.words, got.Words, "%q", tt.text)
		require.Equal(t, tt.lines, got.Lines, "%q", tt.text)
		require.Len(t, got.SHA256, 64)
	}
	require.Equal(t, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", textstats.Analyse("").SHA256)
}

// TestAnalyseAgreesWithScannerAndFields: the counts match what a line
// scanner and strings.Fields give (the implementation they replace), on
// texts of every awkward kind: CRLF, blank lines, no final newline, Unicode
// spaces, invalid UTF-8, long lines.
func TestAnalyseAgreesWithScannerAndFields(t *testing.T) {
	t.Parallel()
	texts := []string{"", "\n", "\n\n", "a", "a\n", "a\r\nb\r\n", " \u00a0 x\u2003y ", "\xff\xfe word \xff",
		strings.Repeat("long ", 40000) + "\nend", "tab\tsep\nvtab\vx\fy\n\n\nlast"}
	for _, text := range texts {
		sc := bufio.NewScanner(strings.NewReader(text))
		sc.Buffer(make([]byte, 0, 64<<10), len(text)+1)
		lines := 0
		for sc.Scan() {
			lines++
		}
		require.NoError(t, sc.Err())
		got := textstats.Analyse(text)
		require.Equal(t, lines, got.Lines, "lines of %q", text)
		require.Equal(t, len(strings.Fields(text)), got.Words, "words of %q", text)
	}
}

// BenchmarkAnalyse: a sync route's request body (a paragraph).
func BenchmarkAnalyse(b *testing.B) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog.\n", 20)
	b.ReportAllocs()
	for b.Loop() {
		_ = textstats.Analyse(text)
	}
}
