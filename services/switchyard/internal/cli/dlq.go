package cli

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

func newDLQCmd() *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect, replay and purge dead letters through the replay service's admin API",
		Long: `Inspect, replay and purge dead letters through the replay service's admin
API (every call is audited under the token's client id).

Credentials: $SWITCHYARD_ADMIN_TOKEN (an access token), or --client-id
(or $SWITCHYARD_ADMIN_CLIENT_ID) with $SWITCHYARD_ADMIN_CLIENT_SECRET,
exchanged at --token-url. switchyard:admin allows every command; roles
get capability scopes: dead-letters:read (list, show, stats, operations),
dead-letters:replay (replay, replay-bulk, cancel), dead-letters:edit
(replay --payload), dead-letters:purge (archive, purge), audit:read.

Times (--since, --until) are RFC 3339 (2026-11-30T08:00:00Z) or a
duration back from now (90m, 36h).`,
	}
	f.register(cmd)
	cmd.AddCommand(newDLQListCmd(&f), newDLQShowCmd(&f), newDLQStatsCmd(&f), newDLQReplayCmd(&f), newDLQReplayBulkCmd(&f),
		newDLQOperationsCmd(&f), newDLQOperationCmd(&f), newDLQCancelCmd(&f), newDLQRemoveCmd(&f, "archive"),
		newDLQRemoveCmd(&f, "purge"), newDLQAuditCmd(&f))
	return cmd
}

// dlqFilter holds the filter flags shared by list, stats and replay-bulk.
type dlqFilter struct {
	topic, fingerprint, client, reason, status, since, until string
}

func (d *dlqFilter) register(cmd *cobra.Command, withStatus bool) {
	fl := cmd.Flags()
	fl.StringVar(&d.topic, "type", "", "job type (= topic)")
	fl.StringVar(&d.fingerprint, "fingerprint", "", "error fingerprint")
	fl.StringVar(&d.client, "client", "", "client id of the job")
	fl.StringVar(&d.reason, "reason", "", "attempts_exhausted, permanent_error, undecodable, unknown_job or max_receive_count")
	if withStatus {
		fl.StringVar(&d.status, "status", "", "stored, replayed or archived")
	}
	fl.StringVar(&d.since, "since", "", "dead-lettered at or after (RFC 3339 or a duration ago)")
	fl.StringVar(&d.until, "until", "", "dead-lettered before (RFC 3339 or a duration ago)")
}

// values renders the filter as query parameters.
func (d *dlqFilter) values(now time.Time) (url.Values, error) {
	q := url.Values{}
	for k, v := range map[string]string{"type": d.topic, "fingerprint": d.fingerprint, "client": d.client, "reason": d.reason, "status": d.status} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for k, v := range map[string]string{"since": d.since, "until": d.until} {
		if v == "" {
			continue
		}
		t, err := parseWhen(v, now)
		if err != nil {
			return nil, usageError{fmt.Errorf("--%s: %w", k, err)}
		}
		q.Set(k, t.UTC().Format(time.RFC3339Nano))
	}
	return q, nil
}

// parseWhen reads an RFC 3339 time or a duration back from now.
func parseWhen(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-30T08:00:00Z) nor a duration ago (36h)", v)
}

// withAdmin runs fn with a client for the admin API.
func withAdmin(cmd *cobra.Command, f *adminFlags, fn func(context.Context, *adminClient) error) error {
	c, err := newAdminClient(cmd.Context(), f)
	if err != nil {
		return err
	}
	return fn(cmd.Context(), c)
}

func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usageError{err}
	}
	return nil
}
