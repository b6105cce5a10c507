package callbacks

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Standard Webhooks' headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SignHeaders sets the Standard Webhooks headers of a delivery of body:
// webhook-id msgID (the same on every retry of one callback, so the
// receiver can deduplicate), webhook-timestamp at (Unix seconds), and
// webhook-signature with one "v1,<base64>" signature per secret,
// space-separated (more than one during a rotation's overlap).
func SignHeaders(h http.Header, secrets []string, msgID string, at time.Time, body []byte) error {
	if len(secrets) == 0 {
		return errors.New("the client has no callback signing secret (switchyard clients callbacks rotate-secret)")
	}
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			return fmt.Errorf("a callback signing secret is malformed: %w", err)
		}
		sig, err := wh.Sign(msgID, at, body)
		if err != nil {
			return fmt.Errorf("signing a callback: %w", err)
		}
		sigs = append(sigs, sig)
	}
	h.Set(HeaderID, msgID)
	h.Set(HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
	h.Set(HeaderSignature, strings.Join(sigs, " "))
	return nil
}
