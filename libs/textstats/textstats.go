// Package textstats computes the statistics of a text that Switchyard's
// demo handlers report: the worker's text-stats job and the gateway's
// text-stats sync route answer with the same figures.
package textstats

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Result is the statistics of one text.
type Result struct {
	Words  int    `json:"words"`
	Lines  int    `json:"lines"`
	SHA256 string `json:"sha256"`
}

// Analyse computes the statistics of text. Lines are counted like wc -l
// would count a text that ends with a newline: a non-empty last line
// without one still counts.
func Analyse(text string) Result {
	sum := sha256.Sum256([]byte(text))
	res := Result{Words: len(strings.Fields(text)), SHA256: hex.EncodeToString(sum[:])}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), len(text)+1)
	for sc.Scan() {
		res.Lines++
	}
	return res
}
