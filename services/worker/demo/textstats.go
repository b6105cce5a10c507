// Package demo holds the job handlers that ship with Switchyard as
// examples of real work: text-stats analyses a text and records the result
// in Postgres inside the worker's transaction.
package demo

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/switchyard/switchyard/libs/jobhandler"
)

// TextStatsResult is the result of a text-stats job.
type TextStatsResult struct {
	Words  int    `json:"words"`
	Lines  int    `json:"lines"`
	SHA256 string `json:"sha256"`
}

// TextStats counts the words and lines of payload.text, hashes it, records
// the figures in demo_text_stats through the task's transaction, and
// returns them.
func TextStats() jobhandler.Handler {
	return jobhandler.Func(func(ctx context.Context, task jobhandler.Task) (json.RawMessage, error) {
		var in struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(task.Payload, &in); err != nil {
			return nil, jobhandler.Permanent(fmt.Errorf("decoding payload: %w", err))
		}
		if in.Text == nil {
			return nil, jobhandler.Permanent(errors.New(`payload needs a "text" string`))
		}
		res := Analyse(*in.Text)
		if _, err := task.Tx.Exec(ctx, `INSERT INTO demo_text_stats (job_id, words, lines, sha256) VALUES ($1, $2, $3, $4)`,
			task.JobID, res.Words, res.Lines, res.SHA256); err != nil {
			return nil, fmt.Errorf("recording text stats: %w", err)
		}
		return json.Marshal(res)
	})
}

// Analyse computes the statistics of text. Lines are counted like wc -l
// would count a text that ends with a newline: a non-empty last line
// without one still counts.
func Analyse(text string) TextStatsResult {
	sum := sha256.Sum256([]byte(text))
	res := TextStatsResult{Words: len(strings.Fields(text)), SHA256: hex.EncodeToString(sum[:])}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), len(text)+1)
	for sc.Scan() {
		res.Lines++
	}
	return res
}
