package jsonbody_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/jsonbody"
	"github.com/switchyard/switchyard/libs/problem"
)

func TestDepthExceeds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		body  string
		limit int
		want  int
	}{
		{"scalar", `"x"`, 0, -1},
		{"flat object at limit 1", `{"a":1}`, 1, -1},
		{"object over limit 0", `{"a":1}`, 0, 0},
		{"nested at limit", `{"a":[{"b":[]}]}`, 4, -1},
		{"nested over limit", `{"a":[{"b":[]}]}`, 3, 11},
		{"siblings do not add up", `[[],[],[],{}]`, 2, -1},
		{"brackets in strings ignored", `{"a":"[[[[{{{{"}`, 1, -1},
		{"escaped quote keeps the string open", `{"a":"\"[[[["}`, 1, -1},
		{"escaped backslash closes the string", `["\\",[[1]]]`, 2, 7},
		{"unbalanced closers do not go negative", `]]]][[`, 1, 5},
		{"empty", ``, 0, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, jsonbody.DepthExceeds([]byte(tt.body), tt.limit))
		})
	}
}

// TestAgreesWithDecoder: for well-formed documents, the scan's depth is the
// nesting the decoder sees (encoding/json refuses beyond 10,000 levels).
func TestAgreesWithDecoder(t *testing.T) {
	t.Parallel()
	for _, depth := range []int{1, 2, 31, 32, 33, 500} {
		doc := strings.Repeat(`{"k":[`, depth/2) + strings.Repeat("[", depth%2) + `"]}"` + strings.Repeat("]", depth%2) + strings.Repeat(`]}`, depth/2)
		var v any
		require.NoError(t, json.Unmarshal([]byte(doc), &v), doc)
		require.Equal(t, -1, jsonbody.DepthExceeds([]byte(doc), depth), "depth %d at its limit", depth)
		require.NotEqual(t, -1, jsonbody.DepthExceeds([]byte(doc), depth-1), "depth %d over %d", depth, depth-1)
	}
}

func FuzzDepthExceeds(f *testing.F) {
	for _, s := range []string{`{"a":[1,{"b":"]"}]}`, `[[[[`, `"\\"[`, ``} {
		f.Add([]byte(s), 3)
	}
	f.Fuzz(func(t *testing.T, body []byte, limit int) {
		if limit < 0 || limit > 1000 {
			return
		}
		at := jsonbody.DepthExceeds(body, limit)
		if at >= 0 {
			if at >= len(body) || (body[at] != '[' && body[at] != '{') {
				t.Fatalf("offset %d is not an opening bracket", at)
			}
			// A prefix ending before the offending bracket is within the limit.
			if jsonbody.DepthExceeds(body[:at], limit) != -1 {
				t.Fatalf("an earlier offset was missed")
			}
		}
	})
}

func BenchmarkDepthExceeds(b *testing.B) {
	body := []byte(strings.Repeat(`{"name":"a string with \"quotes\"","list":[1,2,3,{"x":true}]},`, 1000))
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		jsonbody.DepthExceeds(body, 32)
	}
}

func TestIsMediaType(t *testing.T) {
	t.Parallel()
	for ct, want := range map[string]bool{
		"application/json": true, "application/json; charset=utf-8": true, "Application/JSON": true,
		"application/problem+json": true, "application/vnd.api+json": true,
		"": false, "text/json": false, "application/jsonp": false, "application/json;;": false, "text/plain": false,
	} {
		require.Equal(t, want, jsonbody.IsMediaType(ct), ct)
	}
}

// TestRead: a body within its limit reads whole; one over it, by its
// declared length or by what it turns out to hold, is a 413 naming whose
// limit it is; a limit the server set before is the gateway's; no body is
// nil.
func TestRead(t *testing.T) {
	req := func(body string, declared int64) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		r.ContentLength = declared
		return r
	}
	got, err := jsonbody.Read(req(`{"a":1}`, 7), 7, "this route's")
	require.NoError(t, err)
	require.Equal(t, `{"a":1}`, string(got))

	for name, r := range map[string]*http.Request{
		"declared too long": req(`{}`, 100),
		"longer than said":  req(`{"a":12345678}`, -1),
	} {
		_, err := jsonbody.Read(r, 8, "this route's")
		p, ok := errors.AsType[*problem.Problem](err)
		require.True(t, ok, name)
		require.Equal(t, http.StatusRequestEntityTooLarge, p.Status, name)
		require.Contains(t, p.Detail, "this route's limit of 8 bytes", name)
	}

	capped := req(`{"a":12345678}`, -1)
	capped.Body = http.MaxBytesReader(httptest.NewRecorder(), capped.Body, 4)
	_, err = jsonbody.Read(capped, 100, "this route's")
	p, ok := errors.AsType[*problem.Problem](err)
	require.True(t, ok)
	require.Contains(t, p.Detail, "the gateway's limit of 4 bytes")

	empty := httptest.NewRequest(http.MethodGet, "/", nil)
	got, err = jsonbody.Read(empty, 8, "this route's")
	require.NoError(t, err)
	require.Nil(t, got)
}

// BenchmarkRead reads a 900-byte body of declared length, as the accept
// route does for every submission.
func BenchmarkRead(b *testing.B) {
	body := `{"text": "` + strings.Repeat("lorem ipsum ", 74) + `"}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		if _, err := jsonbody.Read(req, 1<<20, "this route's"); err != nil {
			b.Fatal(err)
		}
	}
}
