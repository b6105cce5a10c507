// Package jsonbody holds the checks every JSON request body gets before
// anything decodes it: is it JSON by its media type, is it within its size
// limit (Read), and how deeply does it nest. Size limits alone do not stop a small body such as 100,000 '['
// from costing a decoder (or a JSON Schema validator, or a handler walking
// the value recursively) a deep recursion; a byte scan does, in one pass
// and without allocating.
package jsonbody

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/switchyard/switchyard/libs/problem"
)

// Read reads req's body, at most limit bytes: a body that declares or
// turns out to be larger is a 413 problem naming whose limit it is (limitOf,
// e.g. "this route's"), and one that cannot be read a 400. A request
// without a body reads as nil. A limit the server set on the body before
// (http.MaxBytesReader) is reported as the gateway's.
func Read(req *http.Request, limit int64, limitOf string) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	// Built only when needed: most bodies fit.
	tooLarge := func() error {
		return problem.PayloadTooLarge.Newf("the body exceeds %s limit of %d bytes", limitOf, limit)
	}
	if req.ContentLength > limit {
		return nil, tooLarge()
	}
	// A declared length sizes the buffer once (ReadFrom wants MinRead
	// spare bytes to see the end without growing).
	var buf bytes.Buffer
	if req.ContentLength > 0 {
		buf.Grow(int(req.ContentLength) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(io.LimitReader(req.Body, limit+1))
	if err != nil {
		if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, problem.PayloadTooLarge.Newf("the body exceeds the gateway's limit of %d bytes", mbe.Limit)
		}
		return nil, problem.BadRequest.New("the request body could not be read").WithCause(fmt.Errorf("reading the request body: %w", err))
	}
	data := buf.Bytes()
	if int64(len(data)) > limit {
		return nil, tooLarge()
	}
	return data, nil
}

// IsMediaType reports whether contentType is application/json or an
// application/*+json type (parameters such as charset allowed).
func IsMediaType(contentType string) bool {
	// The common cases without mime.ParseMediaType, which allocates a map
	// per call (6.7 % of the gateway's CPU under overload); anything else,
	// parameters included, is parsed in full.
	if strings.EqualFold(contentType, "application/json") || strings.EqualFold(contentType, "application/json; charset=utf-8") {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")))
}

// DepthExceeds reports the byte offset of the first '[' or '{' that opens level
// limit+1 of body, or -1 when no value nests deeper than limit. Brackets
// inside strings do not count. It does not check that body is well-formed
// JSON (the decoder that runs next does); on any input it returns without
// error, so it is safe to run first.
func DepthExceeds(body []byte, limit int) int {
	depth := 0
	inString, escaped := false, false
	for i, b := range body {
		if inString {
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
			continue
		}
		switch b {
		case '"':
			inString = true
		case '[', '{':
			depth++
			if depth > limit {
				return i
			}
		case ']', '}':
			if depth > 0 {
				depth--
			}
		}
	}
	return -1
}

// CheckDepth refuses, as a json-too-deep problem (400), a body whose arrays
// and objects nest more than limit levels deep.
func CheckDepth(body []byte, limit int) error {
	if at := DepthExceeds(body, limit); at >= 0 {
		return problem.JSONTooDeep.Newf("the JSON nests more than %d levels deep (at byte %d)", limit, at)
	}
	return nil
}
