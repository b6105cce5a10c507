package auditlog_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/auditlog"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// TestRefusalsAreLimited: 100 refusals from one address and 5 from
// another: the first source gets its burst, the second all of its own,
// and the first source's next row counts what was left out.
func TestRefusalsAreLimited(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := stacktest.NewPool(t)
	r := auditlog.NewRefusals(pool, auditlog.RefusalLimits{PerSource: 1, PerSourceBurst: 5, Total: 1000, TotalBurst: 1000}, nil, slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	req := httptest.NewRequest(http.MethodGet, "/admin/v1/dead-letters", nil)
	for range 100 {
		r.Refused(req, "req-1", "192.0.2.1", "", 401)
	}
	for range 5 {
		r.Refused(req, "req-2", "192.0.2.2", "", 401)
	}
	count := func(ip string) (n int) {
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM admin_audit WHERE source_ip = $1 AND action = 'admin.refused'`, ip).Scan(&n))
		return n
	}
	require.Eventually(t, func() bool { return count("192.0.2.1") == 5 && count("192.0.2.2") == 5 }, 10*time.Second, 10*time.Millisecond)
	// Once the bucket has a token again (1/s), the next refusal is written
	// with the count of those left out.
	var suppressed int
	require.Eventually(t, func() bool {
		r.Refused(req, "req-3", "192.0.2.1", "", 401)
		err := pool.QueryRow(ctx, `SELECT COALESCE(max((counts->>'suppressed_before')::int), 0) FROM admin_audit WHERE source_ip = '192.0.2.1'`).Scan(&suppressed)
		return err == nil && suppressed > 0
	}, 10*time.Second, 50*time.Millisecond)
	require.GreaterOrEqual(t, suppressed, 95, "every refusal left out is counted")
	require.Equal(t, 6, count("192.0.2.1"))
	cancel()
	<-done
}
