package textstats_test

import (
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
