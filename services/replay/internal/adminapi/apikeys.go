package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/libs/apikeys"
	"github.com/switchyard/switchyard/libs/auditlog"
	"github.com/switchyard/switchyard/libs/jsonbody"
	"github.com/switchyard/switchyard/libs/oauthclients"
	"github.com/switchyard/switchyard/libs/problem"
)

// ScopeAPIKeys grants the API key calls: list, show, create, rotate and
// revoke clients' API keys.
const ScopeAPIKeys = "api-keys:manage"

// APIKeys is what the admin API manages API keys with.
type APIKeys struct {
	// Store reads and changes keys; it makes them only with the pepper
	// (without it, create and rotate answer 503).
	Store *apikeys.Store
	// ClientScopes returns a client's scopes (oauthclients.Store.Scopes).
	ClientScopes func(ctx context.Context, clientID string) ([]string, error)
	// CanCreate says whether the store has the pepper.
	CanCreate bool
}

func (a *API) mountAPIKeys(g *echo.Group, guard Guards) {
	if a.Keys == nil {
		return
	}
	manage := guard(ScopeAPIKeys)
	g.GET("/api-keys", a.listKeys, manage)
	g.GET("/api-keys/:id", a.getKey, manage)
	g.POST("/api-keys", a.createKey, manage)
	g.POST("/api-keys/:id/rotate", a.rotateKey, manage)
	g.POST("/api-keys/:id/revoke", a.revokeKey, manage)
}

// NewAPIKey is the body of POST /admin/v1/api-keys.
type NewAPIKey struct {
	ClientID     string        `json:"client_id"`
	Name         string        `json:"name"`
	Scopes       []string      `json:"scopes"`
	AllowedCIDRs []string      `json:"allowed_cidrs"`
	ExpiresAt    *time.Time    `json:"expires_at"`
	Plan         *apikeys.Plan `json:"plan"`
}

// CreatedAPIKey is the answer of create and rotate: the key, shown this
// once, and its record.
type CreatedAPIKey struct {
	Key    string      `json:"key"`
	APIKey apikeys.Key `json:"api_key"`
}

// RotateAPIKey is the body of POST /admin/v1/api-keys/{id}/rotate.
type RotateAPIKey struct {
	// Overlap is how long the old key keeps working (a Go duration,
	// default 24h).
	Overlap string `json:"overlap"`
}

// auditedKeys is the store, recording each change with the caller, in
// the change's transaction.
func (a *API) auditedKeys(c echo.Context) *apikeys.Store {
	e := auditOf(c, "", "")
	return a.Keys.Store.Audited(func(ctx context.Context, tx pgx.Tx, action string, k apikeys.Key) error {
		return auditlog.Write(ctx, tx, auditlog.Entry{Actor: e.Actor, Action: action, Target: k.ID,
			RequestID: e.RequestID, SourceIP: e.SourceIP,
			After: map[string]any{"client_id": k.ClientID, "name": k.Name, "scopes": k.Scopes, "allowed_cidrs": k.AllowedCIDRs,
				"expires_at": k.ExpiresAt, "plan": k.Plan, "rotated_from": k.RotatedFrom, "revoked_at": k.RevokedAt}})
	})
}

// keyProblem maps the store's errors to problems.
func keyProblem(err error) error {
	switch {
	case errors.Is(err, apikeys.ErrNotFound):
		return problem.NotFound.New("no API key has this id").WithCause(err)
	case errors.Is(err, oauthclients.ErrNotFound):
		return problem.InvalidParameter.New("no client has this id").WithCause(err)
	case errors.Is(err, apikeys.ErrInvalid):
		return problem.InvalidParameter.New(err.Error())
	}
	return err
}

func (a *API) listKeys(c echo.Context) error {
	e := auditOf(c, "api_keys.list", "")
	q := c.QueryParams()
	if err := onlyParams(q, []string{"client"}); err != nil {
		return a.recordRead(c, e, err)
	}
	e.Filter = map[string]any{"client": q.Get("client")}
	keys, err := a.Keys.Store.List(c.Request().Context(), q.Get("client"))
	if err != nil {
		return a.recordRead(c, e, err)
	}
	e.Counts = map[string]int{"keys": len(keys)}
	if err := a.recordRead(c, e, nil); err != nil {
		return err
	}
	if keys == nil {
		keys = []apikeys.Key{}
	}
	return c.JSON(http.StatusOK, map[string]any{"items": keys})
}

func (a *API) keyID(c echo.Context) (string, error) {
	id := c.Param("id")
	if !apikeys.ValidID(id) {
		return "", problem.InvalidParameter.New("an API key id is 16 characters a-z and 2-7 (the part after sy_)")
	}
	return id, nil
}

func (a *API) getKey(c echo.Context) error {
	id, err := a.keyID(c)
	e := auditOf(c, "api_keys.get", id)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	k, err := a.Keys.Store.Get(c.Request().Context(), id)
	if err != nil {
		return a.recordRead(c, e, keyProblem(err))
	}
	if err := a.recordRead(c, e, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, k)
}

func (a *API) createKey(c echo.Context) error {
	if !a.Keys.CanCreate {
		return problem.Unavailable.New("this replay service has no API key pepper (SWITCHYARD_API_KEY_PEPPER): it cannot make keys").
			WithHeader("Retry-After", "60")
	}
	body, err := jsonbody.Read(c.Request(), 16<<10, "an API key request's")
	if err != nil {
		return err
	}
	var req NewAPIKey
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.ClientID == "" {
		return problem.InvalidParameter.New(`the body is {"client_id", "name", "scopes", "allowed_cidrs", "expires_at", "plan": {"rate_per_second", "burst", "quota", "quota_period"}}; client_id is required`)
	}
	nk := apikeys.NewKey{ClientID: req.ClientID, Name: req.Name, Scopes: req.Scopes, ExpiresAt: req.ExpiresAt}
	if req.Plan != nil {
		nk.Plan = *req.Plan
	}
	for _, raw := range req.AllowedCIDRs {
		p, err := netip.ParsePrefix(raw)
		if err != nil {
			return problem.InvalidParameter.Newf("allowed_cidrs: %q is not a network such as 203.0.113.0/24", raw)
		}
		nk.AllowedCIDRs = append(nk.AllowedCIDRs, p)
	}
	ctx := c.Request().Context()
	if nk.ClientScopes, err = a.Keys.ClientScopes(ctx, req.ClientID); err != nil {
		return keyProblem(err)
	}
	key, rec, err := a.auditedKeys(c).Create(ctx, nk)
	if err != nil {
		return keyProblem(err)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, CreatedAPIKey{Key: key, APIKey: rec})
}

func (a *API) rotateKey(c echo.Context) error {
	if !a.Keys.CanCreate {
		return problem.Unavailable.New("this replay service has no API key pepper (SWITCHYARD_API_KEY_PEPPER): it cannot make keys").
			WithHeader("Retry-After", "60")
	}
	id, err := a.keyID(c)
	if err != nil {
		return err
	}
	body, err := jsonbody.Read(c.Request(), 1<<10, "a rotation's")
	if err != nil {
		return err
	}
	var req RotateAPIKey
	if err := json.Unmarshal(body, &req); err != nil {
		return problem.InvalidParameter.New(`the body is {"overlap": "24h"}`)
	}
	overlap := 24 * time.Hour
	if req.Overlap != "" {
		if overlap, err = time.ParseDuration(req.Overlap); err != nil || overlap < 0 {
			return problem.InvalidParameter.New(`overlap is a duration such as "24h" or "0s"`)
		}
	}
	ctx := c.Request().Context()
	old, err := a.Keys.Store.Get(ctx, id)
	if err != nil {
		return keyProblem(err)
	}
	scopes, err := a.Keys.ClientScopes(ctx, old.ClientID)
	if err != nil {
		return keyProblem(err)
	}
	key, rec, err := a.auditedKeys(c).Rotate(ctx, id, overlap, scopes)
	if err != nil {
		return keyProblem(err)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, CreatedAPIKey{Key: key, APIKey: rec})
}

func (a *API) revokeKey(c echo.Context) error {
	id, err := a.keyID(c)
	if err != nil {
		return err
	}
	k, err := a.auditedKeys(c).Revoke(c.Request().Context(), id)
	if err != nil {
		return keyProblem(err)
	}
	return c.JSON(http.StatusOK, k)
}
