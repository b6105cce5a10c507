package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/switchyard/switchyard/libs/problem"
)

// adminAPI calls the admin API in this process, through the same
// handler chain (authentication, capability scopes, validation, audit)
// as a call from the network, with the operator's own token: the console
// can do nothing the API would refuse that operator, and every call is
// audited under the operator's client id.
type adminAPI struct {
	handler http.Handler
}

// call sends method path?query (body encoded as JSON when not nil) as the
// operator of from, and decodes a 2xx answer into out (when not nil). A
// non-2xx answer is returned as the API's *problem.Problem.
func (a adminAPI) call(from *http.Request, token, method, path string, query url.Values, body, out any) (int, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("encoding the admin API request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	target := path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(from.Context(), method, target, rd)
	if err != nil {
		return 0, fmt.Errorf("building the admin API request: %w", err)
	}
	// The browser's address is the caller's (the audit log's source_ip),
	// and the console request's id ties the two access-log lines.
	req.RemoteAddr = from.RemoteAddr
	req.Host = from.Host
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "switchyard-console")
	if id := from.Header.Get("X-Request-Id"); id != "" {
		req.Header.Set("X-Request-Id", id)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{header: http.Header{}}
	a.handler.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status >= 300 {
		p := &problem.Problem{}
		if err := json.Unmarshal(rec.body.Bytes(), p); err != nil || p.Status == 0 {
			p = &problem.Problem{Status: rec.status, Title: http.StatusText(rec.status)}
		}
		return rec.status, p
	}
	if out != nil {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return rec.status, fmt.Errorf("decoding the admin API's answer to %s %s: %w", method, path, err)
		}
	}
	return rec.status, nil
}

// recorder is the in-memory ResponseWriter of an in-process call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.body.Write(b)
	if err != nil {
		return n, fmt.Errorf("buffering the admin API's answer: %w", err)
	}
	return n, nil
}
