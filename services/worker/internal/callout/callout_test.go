package callout_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/jobhandler"
	"github.com/switchyard/switchyard/services/worker/internal/callout"
)

func TestAnswer(t *testing.T) {
	t.Parallel()
	const ok, retry, final = "ok", "retry", "permanent"
	for _, c := range []struct {
		code             int
		request, webhook string
	}{
		{200, ok, ok}, {204, ok, ok},
		{301, final, final}, {307, final, final},
		{400, final, retry}, {401, final, retry}, {404, final, retry},
		{408, retry, retry}, {429, retry, retry},
		{410, final, final},
		{500, retry, retry}, {503, retry, retry},
	} {
		for policy, want := range map[callout.Policy]string{callout.Request: c.request, callout.Webhook: c.webhook} {
			err := callout.Answer(&http.Response{StatusCode: c.code, Status: http.StatusText(c.code)}, "the target", policy)
			got := ok
			if err != nil {
				got = retry
				if jobhandler.IsPermanent(err) {
					got = final
				}
				var ce *jobhandler.ClientError
				require.ErrorAs(t, err, &ce, "the submitter gets a class and a message")
			}
			require.Equal(t, want, got, "HTTP %d under policy %d", c.code, policy)
		}
	}
}

func TestTransportError(t *testing.T) {
	t.Parallel()
	cause := errors.New("dial tcp 10.0.0.1:443: connection refused")
	err := callout.TransportError(context.Background(), "the target", cause)
	require.False(t, jobhandler.IsPermanent(err))
	require.ErrorIs(t, err, cause)
	var ce *jobhandler.ClientError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, jobhandler.ClassTargetUnreachable, ce.Class)
	require.NotContains(t, ce.Message, "10.0.0.1", "the address stays with operators")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorAs(t, callout.TransportError(ctx, "the target", cause), &ce)
	require.Equal(t, jobhandler.ClassTimeout, ce.Class)
}
