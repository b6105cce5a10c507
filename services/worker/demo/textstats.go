// Package demo holds the job handlers that ship with Switchyard as
// examples of real work: text-stats analyses a text and records the result
// in Postgres inside the worker's transaction.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard/switchyard/libs/jobhandler"
	"github.com/switchyard/switchyard/libs/textstats"
)

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
		res := textstats.Analyse(*in.Text)
		if _, err := task.Tx.Exec(ctx, `INSERT INTO demo_text_stats (job_id, words, lines, sha256) VALUES ($1, $2, $3, $4)`,
			task.JobID, res.Words, res.Lines, res.SHA256); err != nil {
			return nil, fmt.Errorf("recording text stats: %w", err)
		}
		return json.Marshal(res)
	})
}

// AppliedTwice counts the jobs among ids whose text-stats effect was
// recorded more than once (a duplicate delivery applied again): what a
// fault drill checks is zero.
func AppliedTwice(ctx context.Context, db *pgxpool.Pool, ids []string) (int, error) {
	var n int
	err := db.QueryRow(ctx, `SELECT count(*) FROM (SELECT job_id FROM demo_text_stats WHERE job_id = ANY($1::uuid[])
		GROUP BY job_id HAVING count(*) > 1) d`, ids).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting text-stats effects applied twice: %w", err)
	}
	return n, nil
}

// Effects counts the jobs with a text-stats effect and those whose effect
// was recorded more than once, over every job (a retention soak's check:
// each job that ran has one).
func Effects(ctx context.Context, db *pgxpool.Pool) (jobsWithEffect, appliedTwice int64, err error) {
	err = db.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE n > 1) FROM (SELECT count(*) AS n FROM demo_text_stats GROUP BY job_id) d`).
		Scan(&jobsWithEffect, &appliedTwice)
	if err != nil {
		return 0, 0, fmt.Errorf("counting text-stats effects: %w", err)
	}
	return jobsWithEffect, appliedTwice, nil
}
