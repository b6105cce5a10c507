package jobstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/jobs"
)

// CancelOutcome says what a cancellation did.
type CancelOutcome string

// The outcomes of Cancel.
const (
	// Cancelled: the job was not running; it is cancelled now and its
	// handler will not run.
	Cancelled CancelOutcome = "cancelled"
	// AlreadyCancelled: an earlier request cancelled it.
	AlreadyCancelled CancelOutcome = "already_cancelled"
	// CancelRequested: an attempt is running; it ends as it would have
	// (a success stands), and no later attempt runs.
	CancelRequested CancelOutcome = "cancel_requested"
)

// Cancel cancels job id if it belongs to clientID: at once when it is not
// running (Cancelled), by marking it when an attempt runs
// (CancelRequested). Cancelling again is not an error
// (AlreadyCancelled, or CancelRequested again). A job that succeeded or
// was dead-lettered is jobs.ErrAlreadyFinished; another client's job, or
// none, is jobs.ErrNotFound.
func (s *Store) Cancel(ctx context.Context, id, clientID string) (CancelOutcome, error) {
	if !isUUID(id) {
		return "", fmt.Errorf("job %q: %w", id, jobs.ErrNotFound)
	}
	var status string
	var cancelledNow bool
	// The database function (migration 00015) locks the row and moves it
	// in one statement; the gateway may not update jobs otherwise.
	err := s.pool.QueryRow(ctx, `SELECT status, cancelled_now FROM switchyard_cancel_job($1, $2)`, id, clientID).Scan(&status, &cancelledNow)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", fmt.Errorf("cancelling job %s: %w", id, jobs.ErrNotFound)
	case database.Unavailable(err):
		return "", fmt.Errorf("cancelling job %s: %w: %w", id, jobs.ErrStoreUnavailable, err)
	case err != nil:
		return "", fmt.Errorf("cancelling job %s: %w", id, err)
	}
	switch {
	case cancelledNow:
		return Cancelled, nil
	case jobs.Status(status) == jobs.StatusCancelled:
		return AlreadyCancelled, nil
	case jobs.Status(status) == jobs.StatusProcessing:
		return CancelRequested, nil
	default:
		return "", fmt.Errorf("job %s is %s: %w", id, status, jobs.ErrAlreadyFinished)
	}
}

// CancellationRequested reports, inside tx, whether the job's owner asked to
// cancel it. The worker asks before it runs a handler, in the
// transaction that would hold the handler's effects.
func CancellationRequested(ctx context.Context, tx pgx.Tx, id string) (bool, error) {
	var requested bool
	if err := tx.QueryRow(ctx, `SELECT cancel_requested_at IS NOT NULL FROM jobs WHERE id = $1`, id).Scan(&requested); err != nil {
		return false, fmt.Errorf("reading whether job %s is to be cancelled: %w", id, err)
	}
	return requested, nil
}

// FinishCancelled moves the job whose cancellation was requested while an
// attempt ran (processing, or failed by that attempt) to cancelled inside
// tx, with its attempt (outcome: cancelled
// when the handler never ran; a failed attempt keeps its failure), and
// adds it to the job's timeline. It reports false when no cancellation
// was requested or the job is finished.
func FinishCancelled(ctx context.Context, tx pgx.Tx, id string, attempt int, handlerRan bool) (bool, error) {
	tag, err := tx.Exec(ctx, `
		WITH moved AS (
			UPDATE jobs SET status = 'cancelled', next_attempt_at = NULL, finished_at = now(), updated_at = now()
			WHERE id = $1 AND status = ANY($4) AND cancel_requested_at IS NOT NULL RETURNING id
		), attempt AS (
			UPDATE job_attempts SET outcome = 'cancelled', finished_at = now()
			WHERE job_id = $1 AND attempt = $2 AND NOT $3 AND EXISTS (SELECT 1 FROM moved)
		)
		INSERT INTO job_events (job_id, type) SELECT id, 'cancelled' FROM moved`, id, attempt, handlerRan,
		statusStrings(jobs.Sources(jobs.StatusCancelled)))
	if err != nil {
		return false, fmt.Errorf("cancelling job %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}
