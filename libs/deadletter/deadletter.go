// Package deadletter describes why a message was dead-lettered: the
// metadata the worker attaches to a message it sends to a dead-letter queue,
// the reasons, and the error fingerprint that groups failures with the same
// cause. It performs no I/O.
//
// The metadata travels as one JSON message attribute (Attribute) rather
// than one attribute per field, because SQS allows only ten attributes per
// message and the original message's own attributes must fit beside it.
package deadletter

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Attribute is the SQS message attribute (Watermill metadata key) that
// holds the JSON-encoded Metadata.
const Attribute = "switchyard_dead_letter"

// Reason says why a message was dead-lettered.
type Reason string

// Reasons.
const (
	// ReasonAttemptsExhausted: the handler failed on every allowed attempt.
	ReasonAttemptsExhausted Reason = "attempts_exhausted"
	// ReasonPermanentError: the handler reported an error retrying cannot fix.
	ReasonPermanentError Reason = "permanent_error"
	// ReasonUndecodable: the message is not a Switchyard job message.
	ReasonUndecodable Reason = "undecodable"
	// ReasonUnknownJob: the message names a job that does not exist.
	ReasonUnknownJob Reason = "unknown_job"
	// ReasonMaxReceiveCount: SQS's RedrivePolicy moved the message after
	// too many receives without a delete (a worker crash loop); such
	// messages carry no Metadata of ours.
	ReasonMaxReceiveCount Reason = "max_receive_count"
)

// Errors of the dead-letter store and its bulk replays; libs/problem maps
// them to HTTP problems.
var (
	// ErrNotFound: no dead letter with that id (or operation, for replays).
	ErrNotFound = errors.New("dead letter not found")
	// ErrNotReplayable: the dead letter cannot be replayed in its state
	// (archived, no job, the job is not dead-lettered).
	ErrNotReplayable = errors.New("dead letter cannot be replayed")
	// ErrOperationNotFound: no bulk replay operation with that id.
	ErrOperationNotFound = errors.New("replay operation not found")
	// ErrOperationFinished: the bulk replay operation is not running any
	// more (completed, stopped or cancelled).
	ErrOperationFinished = errors.New("replay operation is not running")
	// ErrSelectionTooLarge: a bulk replay's (or archive's, or purge's)
	// filter selects more dead letters than one request may take.
	ErrSelectionTooLarge = errors.New("the filter selects too many dead letters")
	// ErrEmptyFilter: a bulk archive or purge named no filter.
	ErrEmptyFilter = errors.New("no filter given")
)

// MaxErrorBytes caps the error text kept in Metadata, so that a long error
// cannot push a message past SQS's 256 KiB limit.
const MaxErrorBytes = 4 << 10

// Metadata is what the worker records about a dead-lettered message.
type Metadata struct {
	Reason Reason `json:"reason"`
	// Error is the last error's text, at most MaxErrorBytes.
	Error string `json:"error,omitempty"`
	// Fingerprint groups errors with the same cause; see Fingerprint.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Attempts is how many attempts failed for this message.
	Attempts int    `json:"attempts"`
	Handler  string `json:"handler,omitempty"`
	// Topic is the job type (the queue the message came from).
	Topic          string     `json:"topic"`
	JobID          string     `json:"job_id,omitempty"`
	ClientID       string     `json:"client_id,omitempty"`
	TraceID        string     `json:"trace_id,omitempty"`
	FirstFailureAt *time.Time `json:"first_failure_at,omitempty"`
	LastFailureAt  *time.Time `json:"last_failure_at,omitempty"`
	// DeadLetteredAt is when the worker sent the message to the DLQ.
	DeadLetteredAt time.Time `json:"dead_lettered_at"`
	// OriginalAttributes are the message's own attributes when it was not
	// a Switchyard job message (for a job message they travel as they
	// were, beside Attribute).
	OriginalAttributes map[string]string `json:"original_attributes,omitempty"`
}

// Encode returns m as the value of Attribute.
func (m Metadata) Encode() (string, error) {
	m.Error = Truncate(m.Error, MaxErrorBytes)
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encoding dead-letter metadata: %w", err)
	}
	return string(b), nil
}

// Decode reads the value of Attribute.
func Decode(s string) (Metadata, error) {
	var m Metadata
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return Metadata{}, fmt.Errorf("decoding dead-letter metadata: %w", err)
	}
	return m, nil
}

// TraceID returns the trace id of a W3C traceparent, or "" when tp is not
// one.
func TraceID(tp string) string {
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || len(parts[1]) != 32 {
		return ""
	}
	return parts[1]
}

// Truncate shortens s to at most n bytes without splitting a UTF-8
// character, marking the cut with "…".
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// The variable parts of error messages, replaced by placeholders before
// fingerprinting, most specific first.
var normalisers = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`), "<uuid>"},
	{regexp.MustCompile(`\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?`), "<time>"},
	{regexp.MustCompile(`[a-z][a-z0-9+.-]*://[^\s"']+`), "<url>"},
	{regexp.MustCompile(`\[[0-9a-fA-F:]*:[0-9a-fA-F:.]*\](:\d+)?`), "<addr>"},
	{regexp.MustCompile(`\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b`), "<addr>"},
	{regexp.MustCompile(`(?i)\b(0x)?[0-9a-f]*\d[0-9a-f]*[a-f][0-9a-f]*\b|(?i)\b(0x)?[0-9a-f]*[a-f][0-9a-f]*\d[0-9a-f]*\b`), "<hex>"},
	{regexp.MustCompile(`"[^"]*"|'[^']*'`), "<str>"},
	{regexp.MustCompile(`\d+(\.\d+)?(ns|µs|us|ms|s|m|h)?`), "<n>"},
}

// hexMinLen keeps short words made of hex letters ("bad", "cafe") out of
// the hex normaliser: only runs of 8 or more count.
const hexMinLen = 8

// Normalise strips the parts of an error message that vary between
// occurrences of the same failure (ids, numbers, times, addresses, quoted
// values), so that messages with one cause read the same.
func Normalise(msg string) string {
	msg = Truncate(msg, MaxErrorBytes)
	for _, n := range normalisers {
		msg = n.re.ReplaceAllStringFunc(msg, func(m string) string {
			if n.with == "<hex>" && len(m) < hexMinLen {
				return m
			}
			return n.with
		})
	}
	return strings.Join(strings.Fields(msg), " ")
}

// Fingerprint identifies a failure's cause: a short hash of the handler,
// the error class (permanent or not) and the normalised message. It is the
// same on every attempt and every worker instance for the same cause.
func Fingerprint(handler string, permanent bool, msg string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%t\x00%s", handler, permanent, Normalise(msg))
	return hex.EncodeToString(h.Sum(nil))[:16]
}
