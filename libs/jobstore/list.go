package jobstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/jobs"
)

// MaxPageSize bounds a page of List.
const MaxPageSize = 100

// ListFilter selects a client's jobs. Zero fields select everything.
type ListFilter struct {
	// Type keeps jobs of one type.
	Type string
	// Statuses keeps jobs in any of these statuses.
	Statuses []jobs.Status
	// CreatedFrom and CreatedBefore bound created_at: [from, before).
	CreatedFrom, CreatedBefore time.Time
	// After is the cursor of the last job of the previous page: the page
	// starts with the next older job.
	After *Cursor
	// Limit is the page size, 1 to MaxPageSize.
	Limit int
}

// Cursor is a position in a listing: the (created_at, id) of a job.
// Listings are ordered newest first by both, so a cursor is stable while
// jobs are added (they come before it) and deleted.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// Encode returns the cursor as an opaque URL-safe string.
func (c Cursor) Encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + "." + c.ID))
}

// ErrBadCursor is ParseCursor's answer for a string Encode did not make.
var ErrBadCursor = errors.New("not a cursor this API returned")

// ParseCursor reads a cursor Encode returned.
func ParseCursor(s string) (Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) > 64 {
		return Cursor{}, ErrBadCursor
	}
	micros, id, ok := strings.Cut(string(raw), ".")
	if !ok || !isUUID(id) {
		return Cursor{}, ErrBadCursor
	}
	us, err := strconv.ParseInt(micros, 10, 64)
	if err != nil {
		return Cursor{}, ErrBadCursor
	}
	return Cursor{CreatedAt: time.UnixMicro(us).UTC(), ID: uuid.MustParse(id).String()}, nil
}

// Summary is a job as a listing shows it: no payload, result or
// timeline (GET /v1/jobs/{id} has them).
type Summary struct {
	ID, Type       string
	Status         jobs.Status
	Attempts       int
	LastErrorClass string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	FinishedAt     *time.Time
	NextAttemptAt  *time.Time
	// CancelRequestedAt is when the owner asked to cancel the job.
	CancelRequestedAt *time.Time
	// RunAt is when a scheduled job is due.
	RunAt *time.Time
}

// Page is one page of a listing, newest first. Next is the cursor of the
// following page, nil on the last.
type Page struct {
	Jobs []Summary
	Next *Cursor
}

const summaryColumns = `id::text, type, status, attempts,
	COALESCE(last_error_class, CASE WHEN last_error IS NULL THEN '' ELSE '` + unknownErrorClass + `' END),
	created_at, updated_at, finished_at, next_attempt_at, cancel_requested_at, run_at`

// List returns a page of clientID's jobs that match f, newest first.
// Every filter has an index in the listing's order (migration 00016), so
// a page costs about Limit index entries at any depth: the position is
// the cursor, never an OFFSET.
func (s *Store) List(ctx context.Context, clientID string, f ListFilter) (Page, error) {
	if f.Limit < 1 || f.Limit > MaxPageSize {
		return Page{}, fmt.Errorf("page size %d is not between 1 and %d", f.Limit, MaxPageSize)
	}
	where := []string{"client_id = $1"}
	args := []any{clientID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Type != "" {
		where = append(where, "type = "+arg(f.Type))
	}
	switch len(f.Statuses) {
	case 0:
	case 1:
		where = append(where, "status = "+arg(string(f.Statuses[0])))
	default:
		where = append(where, "status = ANY("+arg(statusStrings(f.Statuses))+")")
	}
	if !f.CreatedFrom.IsZero() {
		where = append(where, "created_at >= "+arg(f.CreatedFrom))
	}
	if !f.CreatedBefore.IsZero() {
		where = append(where, "created_at < "+arg(f.CreatedBefore))
	}
	if f.After != nil {
		where = append(where, "(created_at, id) < ("+arg(f.After.CreatedAt)+", "+arg(f.After.ID)+"::uuid)")
	}
	// jobs.id, not id: the output column "id" is the text form, and
	// ORDER BY would sort by it, which no index holds.
	query := `SELECT ` + summaryColumns + ` FROM jobs WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY jobs.created_at DESC, jobs.id DESC LIMIT ` + arg(f.Limit+1)
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return Page{}, listError(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Summary, error) {
		var j Summary
		var status string
		err := row.Scan(&j.ID, &j.Type, &status, &j.Attempts, &j.LastErrorClass, &j.CreatedAt, &j.UpdatedAt,
			&j.FinishedAt, &j.NextAttemptAt, &j.CancelRequestedAt, &j.RunAt)
		j.Status = jobs.Status(status)
		return j, err
	})
	if err != nil {
		return Page{}, listError(err)
	}
	page := Page{Jobs: out}
	if len(out) > f.Limit {
		page.Jobs = out[:f.Limit]
		last := page.Jobs[f.Limit-1]
		page.Next = &Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	return page, nil
}

func listError(err error) error {
	if database.Unavailable(err) {
		return fmt.Errorf("listing jobs: %w: %w", jobs.ErrStoreUnavailable, err)
	}
	return fmt.Errorf("listing jobs: %w", err)
}
