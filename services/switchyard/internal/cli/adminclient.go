package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// adminFlags say where the replay service's admin API is and how to
// authenticate to it.
type adminFlags struct {
	url      string
	token    string
	clientID string
	tokenURL string
	json     bool
}

func (f *adminFlags) register(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.url, "admin-url", envOr("SWITCHYARD_ADMIN_URL", "http://127.0.0.1:8083"), "replay service admin API ($SWITCHYARD_ADMIN_URL)")
	pf.StringVar(&f.token, "token", "", "access token (default $SWITCHYARD_ADMIN_TOKEN)")
	pf.StringVar(&f.clientID, "client-id", os.Getenv("SWITCHYARD_ADMIN_CLIENT_ID"), "OAuth client to get a token with, instead of --token ($SWITCHYARD_ADMIN_CLIENT_ID)")
	pf.StringVar(&f.tokenURL, "token-url", envOr("SWITCHYARD_TOKEN_URL", "http://127.0.0.1:8070/oauth2/token"), "token endpoint for --client-id ($SWITCHYARD_TOKEN_URL)")
	pf.BoolVar(&f.json, "json", false, "print the API's JSON instead of tables")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// adminClient calls the admin API.
type adminClient struct {
	base *url.URL
	http *http.Client
}

// newAdminClient builds a client from f. The token comes from --token or
// $SWITCHYARD_ADMIN_TOKEN, or is fetched with the client credentials grant
// for --client-id and $SWITCHYARD_ADMIN_CLIENT_SECRET (kept out of flags so
// that it does not show in process listings).
func newAdminClient(ctx context.Context, f *adminFlags) (*adminClient, error) {
	base, err := url.Parse(strings.TrimRight(f.url, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, usageError{fmt.Errorf("--admin-url %q is not an http(s) URL", f.url)}
	}
	token := f.token
	if token == "" {
		token = os.Getenv("SWITCHYARD_ADMIN_TOKEN")
	}
	secret := os.Getenv("SWITCHYARD_ADMIN_CLIENT_SECRET")
	plain := &http.Client{Timeout: 30 * time.Second}
	var hc *http.Client
	switch {
	case token != "":
		hc = oauth2.NewClient(context.WithValue(ctx, oauth2.HTTPClient, plain), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token}))
	case f.clientID != "":
		if secret == "" {
			return nil, usageError{errors.New("--client-id needs its secret in $SWITCHYARD_ADMIN_CLIENT_SECRET")}
		}
		// No scope asked: the token carries every scope the client may
		// have (the admin scope, or a role's capability scopes).
		cc := clientcredentials.Config{ClientID: f.clientID, ClientSecret: secret, TokenURL: f.tokenURL, AuthStyle: oauth2.AuthStyleInHeader}
		hc = cc.Client(context.WithValue(ctx, oauth2.HTTPClient, plain))
	default:
		return nil, usageError{errors.New("no credentials for the admin API: set $SWITCHYARD_ADMIN_TOKEN (or --token), " +
			"or --client-id with $SWITCHYARD_ADMIN_CLIENT_SECRET for a client with the switchyard:admin scope or a role's dead-letters:* scopes")}
	}
	hc.Timeout = 30 * time.Second
	return &adminClient{base: base, http: hc}, nil
}

// apiError is a problem document the API answered with.
type apiError struct {
	Status int    `json:"status"`
	Type   string `json:"type"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Errors []struct {
		Pointer string `json:"pointer"`
		Detail  string `json:"detail"`
	} `json:"errors"`
	RequestID string `json:"request_id"`
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the admin API answered %d %s", e.Status, e.Title)
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	for _, fe := range e.Errors {
		fmt.Fprintf(&b, "\n  %s: %s", fe.Pointer, fe.Detail)
	}
	if e.RequestID != "" {
		b.WriteString(" (request " + e.RequestID + ")")
	}
	return b.String()
}

// do sends one request and returns the answer's body; a 4xx/5xx answer is
// an *apiError. body, when not nil, is sent as JSON.
func (c *adminClient) do(ctx context.Context, method, path string, query url.Values, body any) ([]byte, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u.Path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer to %s %s: %w", method, u.Path, err)
	}
	if resp.StatusCode >= 400 {
		apiErr := &apiError{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode)}
		if json.Unmarshal(raw, apiErr) != nil || apiErr.Title == "" {
			apiErr.Title = http.StatusText(resp.StatusCode)
		}
		return nil, apiErr
	}
	return raw, nil
}

// get is do for GET, decoding the answer into out.
func (c *adminClient) get(ctx context.Context, path string, query url.Values, out any) ([]byte, error) {
	raw, err := c.do(ctx, http.MethodGet, path, query, nil)
	if err != nil {
		return nil, err
	}
	return raw, decodeInto(raw, out)
}

func decodeInto(raw []byte, out any) error {
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("reading the admin API's answer: %w", err)
	}
	return nil
}

// printJSON writes raw, indented.
func printJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("formatting JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}
