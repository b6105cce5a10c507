package jobsapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
)

// recordingStore stands in for Postgres in the fuzz test, which checks the
// request-validation logic only; the store adapter is tested against a
// real database above.
type recordingStore struct {
	mu       sync.Mutex
	accepted [][]byte
}

func (s *recordingStore) Accept(_ context.Context, sub jobs.Submission) (jobs.Job, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accepted = append(s.accepted, sub.Payload)
	return jobs.Job{ID: sub.ID, Status: jobs.StatusAccepted}, true, nil
}

func (s *recordingStore) Get(context.Context, string, string) (jobs.Job, error) {
	return jobs.Job{}, jobs.ErrNotFound
}

func (s *recordingStore) List(context.Context, string, jobstore.ListFilter) (jobstore.Page, error) {
	return jobstore.Page{}, nil
}

func (s *recordingStore) Cancel(context.Context, string, string) (jobstore.CancelOutcome, error) {
	return "", jobs.ErrNotFound
}

// FuzzSubmitBody throws arbitrary bodies at POST /v1/jobs/text-stats: the
// answer is always a deliberate 202/400/413/422 (never a 5xx or a crash),
// and whatever is accepted is a JSON object with a string "text".
func FuzzSubmitBody(f *testing.F) {
	for _, seed := range []string{`{"text":"hi"}`, `{"text":1}`, `{`, ``, `[]`, "{\"text\":\"\xff\"}", `{"text":"a"} x`, `null`,
		`{"text":"` + strings.Repeat("é", 60) + `"}`, "{\"text\":\"\\ud800\"}"} {
		f.Add([]byte(seed))
	}
	store := &recordingStore{}
	srv := newServer(f, store, "")
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/jobs/text-stats", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(headerClient, "fuzzer")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted:
			var v struct {
				Text *string `json:"text"`
			}
			if err := json.Unmarshal(body, &v); err != nil || v.Text == nil {
				t.Fatalf("accepted a body that is not a text-stats payload: %q", body)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		default:
			t.Fatalf("status %d for body %q", resp.StatusCode, body)
		}
	})
}
