// Package jobpause pauses and resumes job types: while a type is paused
// its workers receive none of its messages, which wait in SQS. A pause is
// a row of job_type_pauses (set by the admin API, audited), so it
// survives worker restarts; workers follow the table through a Gate,
// reloaded at once on NOTIFY switchyard_job_pauses and every few seconds
// in case a notification is lost.
package jobpause

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard/switchyard/libs/pgnotify"
)

// Channel is the NOTIFY channel of job_type_pauses.
const Channel = "switchyard_job_pauses"

// Pause is one paused job type.
type Pause struct {
	JobType  string    `json:"job_type"`
	PausedAt time.Time `json:"paused_at"`
	PausedBy string    `json:"paused_by"`
	Reason   string    `json:"reason,omitempty"`
}

// Querier runs a query (a pool, a connection or a transaction).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Execer runs a statement (a pool, a connection or a transaction).
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// List returns the paused job types.
func List(ctx context.Context, db Querier) ([]Pause, error) {
	rows, err := db.Query(ctx, `SELECT job_type, paused_at, paused_by, reason FROM job_type_pauses ORDER BY job_type`)
	if err != nil {
		return nil, fmt.Errorf("reading paused job types: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Pause, error) {
		var p Pause
		err := r.Scan(&p.JobType, &p.PausedAt, &p.PausedBy, &p.Reason)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading paused job types: %w", err)
	}
	return out, nil
}

// Set pauses jobType (by whom, why); false when it was paused already
// (the first pause is kept).
func Set(ctx context.Context, db Execer, jobType, by, reason string) (bool, error) {
	tag, err := db.Exec(ctx, `INSERT INTO job_type_pauses (job_type, paused_by, reason) VALUES ($1, $2, $3) ON CONFLICT (job_type) DO NOTHING`,
		jobType, by, reason)
	if err != nil {
		return false, fmt.Errorf("pausing job type %s: %w", jobType, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Clear resumes jobType; false when it was not paused.
func Clear(ctx context.Context, db Execer, jobType string) (bool, error) {
	tag, err := db.Exec(ctx, `DELETE FROM job_type_pauses WHERE job_type = $1`, jobType)
	if err != nil {
		return false, fmt.Errorf("resuming job type %s: %w", jobType, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Gate is a worker's view of the paused job types: receive loops wait on
// it (Wait) and cut a long poll short when their type is paused (Paused).
// Until the table was first read every type counts as paused, so that a
// worker restarted during a pause does not take messages before it knows.
type Gate struct {
	mu     sync.Mutex
	loaded bool
	topics map[string]*topicState
	db     Querier
	logger *slog.Logger
	// reloader, when set, follows the table (Run).
	reloader *pgnotify.Reloader
}

// topicState is one job type's state: paused is closed while the type is
// paused (and replaced when it resumes), resumed closed while it runs.
type topicState struct {
	isPaused        bool
	paused, resumed chan struct{}
}

func newTopicState() *topicState {
	// Unknown until loaded: paused.
	p := make(chan struct{})
	close(p)
	return &topicState{isPaused: true, paused: p, resumed: make(chan struct{})}
}

// NewGate returns a Gate reading job_type_pauses through db, reloaded on
// notifications received on connections from connector (nil: only when
// Load is called) and every interval.
func NewGate(db Querier, connector pgnotify.Connector, interval time.Duration, logger *slog.Logger) *Gate {
	g := &Gate{topics: map[string]*topicState{}, db: db, logger: logger}
	if connector != nil {
		g.reloader = pgnotify.NewReloader(connector, Channel, interval, func(ctx context.Context) {
			if err := g.Load(ctx); err != nil && ctx.Err() == nil {
				logger.Warn("reading paused job types; the last known state holds", "error", err)
			}
		}, logger)
	}
	return g
}

// Run follows the table until ctx ends (it blocks).
func (g *Gate) Run(ctx context.Context) {
	if g.reloader != nil {
		g.reloader.Run(ctx)
	}
}

// Load reads the table and applies it.
func (g *Gate) Load(ctx context.Context) error {
	pauses, err := List(ctx, g.db)
	if err != nil {
		return err
	}
	paused := map[string]bool{}
	for _, p := range pauses {
		paused[p.JobType] = true
	}
	g.apply(paused)
	return nil
}

// apply makes paused the paused set.
func (g *Gate) apply(paused map[string]bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.loaded = true
	for name := range paused {
		if _, ok := g.topics[name]; !ok {
			g.topics[name] = newTopicState()
		}
	}
	for name, st := range g.topics {
		switch want := paused[name]; {
		case want && !st.isPaused:
			st.isPaused = true
			close(st.paused)
			st.resumed = make(chan struct{})
			g.logger.Info("job type paused: receiving stops", "job_type", name)
		case !want && st.isPaused:
			st.isPaused = false
			close(st.resumed)
			st.paused = make(chan struct{})
			g.logger.Info("job type resumed: receiving again", "job_type", name)
		}
	}
}

// state returns topic's state, made on first use (paused until loaded,
// running after).
func (g *Gate) state(topic string) *topicState {
	st, ok := g.topics[topic]
	if !ok {
		st = newTopicState()
		if g.loaded {
			st.isPaused = false
			close(st.resumed)
			st.paused = make(chan struct{})
		}
		g.topics[topic] = st
	}
	return st
}

// Wait blocks while topic is paused (or not known yet); false when ctx
// ended first.
func (g *Gate) Wait(ctx context.Context, topic string) bool {
	for {
		g.mu.Lock()
		st := g.state(topic)
		if !st.isPaused {
			g.mu.Unlock()
			return true
		}
		resumed := st.resumed
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-resumed:
		}
	}
}

// Paused returns a channel that is closed once topic is paused (already
// closed if it is).
func (g *Gate) Paused(topic string) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state(topic).paused
}

// IsPaused reports whether topic is paused now.
func (g *Gate) IsPaused(topic string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state(topic).isPaused
}

// Ready fails until the table was read once (the worker receives nothing
// until then).
func (g *Gate) Ready(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.loaded {
		return errors.New("the paused job types were not read yet")
	}
	return nil
}
