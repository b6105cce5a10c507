// Package jobpayload checks a job payload the way the gateway checks a new
// request: one well-formed JSON value in valid UTF-8, made only of
// characters SQS can carry, within the job type's size limit, satisfying
// its JSON Schema. The replay service checks edited payloads with it, so a
// replay can carry nothing a client could not have submitted.
package jobpayload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jsonbody"
	"github.com/switchyard/switchyard/libs/problem"
)

// Check validates body as a payload of jt and returns a problem error
// (400 malformed or nested too deeply, 413 too large, 422 schema
// violations) when it is not one.
func Check(jt *jobcatalog.JobType, body []byte) error {
	if int64(len(body)) > jt.MaxBodyBytes {
		return problem.PayloadTooLarge.Newf("the payload is %d bytes; job type %q takes at most %d", len(body), jt.Name, jt.MaxBodyBytes)
	}
	if err := jsonbody.CheckDepth(body, jt.MaxJSONDepth); err != nil {
		return err
	}
	if err := CheckJSON(body); err != nil {
		return err
	}
	violations, err := jt.Validate(body)
	if err != nil {
		return fmt.Errorf("validating payload: %w", err)
	}
	if len(violations) > 0 {
		fields := make([]problem.FieldError, len(violations))
		for i, v := range violations {
			fields[i] = problem.FieldError{Pointer: v.Pointer, Detail: v.Detail}
		}
		return problem.ValidationFailed.Newf("the payload does not satisfy the schema of job type %q", jt.Name).WithErrors(fields)
	}
	return nil
}

// CheckJSON insists on one well-formed JSON value in valid UTF-8, made only
// of characters an SQS message body may hold.
func CheckJSON(body []byte) error {
	if len(body) == 0 {
		return problem.MalformedJSON.New("the body is empty; send a JSON object")
	}
	if !utf8.Valid(body) {
		return problem.MalformedJSON.New("the body is not valid UTF-8")
	}
	// json.Valid holds one value and nothing after it, without copying
	// the body; the decoder runs only to say what is wrong.
	if !json.Valid(body) {
		return describeInvalid(body)
	}
	for i, r := range string(body) {
		if !sqsCharacter(r) {
			return problem.MalformedJSON.Newf("character U+%04X at byte %d cannot be carried by the queue; escape it as \\u%04x", r, i, r)
		}
	}
	if i := escapedNUL(body); i >= 0 {
		return problem.MalformedJSON.Newf("the escape \\u0000 at byte %d cannot be stored (Postgres's jsonb holds no NUL character)", i)
	}
	return nil
}

// describeInvalid is the problem for a body json.Valid refused.
func describeInvalid(body []byte) error {
	var v json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return problem.MalformedJSON.Newf("invalid JSON at byte %d: %s", se.Offset, se.Error())
		}
		return problem.MalformedJSON.Newf("invalid JSON: %s", err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return problem.MalformedJSON.New("the body holds more than one JSON value")
	}
	// Unreachable for a body json.Valid refused, unless the two disagree.
	return problem.MalformedJSON.New("invalid JSON")
}

// escapedNUL returns the offset of the first \u0000 escape in the valid
// JSON body, or -1. Backslashes occur only inside strings, each starting
// an escape, so counting them is enough: "\\u0000" is a backslash
// followed by text, not a NUL.
func escapedNUL(body []byte) int {
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		if i+5 < len(body) && body[i+1] == 'u' && string(body[i+2:i+6]) == "0000" {
			return i
		}
		i++ // skip the escaped character
	}
	return -1
}

// sqsCharacter reports whether SQS accepts r in a message body
// (#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF).
func sqsCharacter(r rune) bool {
	switch {
	case r == 0x9 || r == 0xA || r == 0xD:
		return true
	case r >= 0x20 && r <= 0xD7FF:
		return true
	case r >= 0xE000 && r <= 0xFFFD:
		return true
	default:
		return r >= 0x10000 && r <= 0x10FFFF
	}
}
