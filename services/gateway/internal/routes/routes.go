// Package routes reads the gateway's routes file: every public route, what
// serves it and who may call it. It is the gateway's access policy:
//
//   - a route lists the scopes a caller's token must hold (all of them);
//   - a route that names no scopes at all is denied to everyone (deny by
//     default); `scopes: []` explicitly allows any authenticated caller;
//   - a route under /admin/ must require the admin scope;
//   - a path no route lists is not served (404).
//
// Errors name the file, the line and the field. Values may refer to
// environment variables as ${NAME} or ${NAME:-default}.
package routes

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/callbacks"
	"github.com/switchyard/switchyard/libs/oauthclients"
	"github.com/switchyard/switchyard/libs/yamlenv"
)

// Modes a route can have.
const (
	// ModeAsync accepts a job of the route's job type.
	ModeAsync = "async"
	// ModeJobStatus reports a job's status to its owner.
	ModeJobStatus = "job-status"
	// ModeJobList lists the caller's jobs.
	ModeJobList = "job-list"
	// ModeJobCancel cancels one of the caller's jobs.
	ModeJobCancel = "job-cancel"
	// ModeSync answers at once from a Go handler or an HTTP upstream.
	ModeSync = "sync"
)

var modes = []string{ModeSync, ModeAsync, ModeJobStatus, ModeJobList, ModeJobCancel}

// DefaultAdminScope is the admin scope when the file names none.
const DefaultAdminScope = "switchyard:admin"

// File is a parsed routes file.
type File struct {
	// AdminScope is the scope every /admin/ route must require.
	AdminScope string
	// Edge applies to every route (edge.go).
	Edge   Edge
	Routes []Route
}

// Route is one public route.
type Route struct {
	// Name identifies the route in logs and metrics (default: "METHOD path").
	Name string
	// Method is the HTTP method.
	Method string
	// Path is the route's path; {name} segments are parameters.
	Path string
	// Mode is ModeAsync, ModeJobStatus, ModeJobList, ModeJobCancel or
	// ModeSync.
	Mode string
	// JobType is the job type an async route accepts.
	JobType string
	// Scopes are the scopes a caller must hold, all of them.
	Scopes []string
	// Denied is true when the route declares no policy (no scopes key):
	// every caller is refused.
	Denied bool
	// Auth is the credentials the route accepts (authn.CredentialBearer,
	// authn.CredentialAPIKey); default bearer only.
	Auth []string
	// Sync says how a sync route is served (nil for other modes).
	Sync *Sync
	// Edge is the route's own protections, on top of the file's.
	Edge Edge
	// Line is where the route starts in the file.
	Line int
}

// Label is the route's name for logs and metrics: Name, or "METHOD path".
func (r Route) Label() string {
	if r.Name != "" {
		return r.Name
	}
	return r.Method + " " + r.Path
}

// Params returns the names of the path parameters.
func (r Route) Params() []string {
	var out []string
	for _, seg := range strings.Split(r.Path, "/") {
		if strings.HasPrefix(seg, "{") {
			out = append(out, seg[1:len(seg)-1])
		}
	}
	return out
}

// EchoPath returns the path in Echo's syntax (:name for {name}).
func (r Route) EchoPath() string {
	segs := strings.Split(r.Path, "/")
	for i, seg := range segs {
		if strings.HasPrefix(seg, "{") {
			segs[i] = ":" + seg[1:len(seg)-1]
		}
	}
	return strings.Join(segs, "/")
}

// Names is a set of names the routes file may refer to.
type Names interface {
	Has(name string) bool
}

// Known is what routes may refer to: the job types of the job types file
// and the sync handlers registered in the gateway.
type Known struct {
	JobTypes Names
	Handlers Names
}

// Load reads and validates the routes file at path.
func Load(path string, known Known) (*File, error) {
	data, err := os.ReadFile(path) //nolint:gosec // the path is the operator's own configuration
	if err != nil {
		return nil, fmt.Errorf("reading routes: %w", err)
	}
	return Parse(path, data, known)
}

// Error is a problem at a place in the routes file.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
}

var (
	methods      = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
	segmentRe    = regexp.MustCompile(`^(?:[A-Za-z0-9._~!$&'()*+,;=:@-]+|\{[a-z][a-z0-9_]{0,31}\})$`)
	routeNameRe  = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)
	routeKeys    = append([]string{"name", "method", "path", "mode", "job_type", "scopes", "auth", "edge"}, syncKeys...)
	topLevelKeys = []string{"admin_scope", "edge", "routes"}
)

// Parse reads and validates a routes document; name is used in errors.
func Parse(name string, data []byte, known Known) (*File, error) {
	fail := func(line int, field, format string, args ...any) error {
		return &Error{File: name, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("%s: parsing YAML: %w", name, err)
	}
	if err := yamlenv.Expand(&root); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, fail(max(root.Line, 1), "", "the file must be a mapping with a routes list")
	}
	doc := root.Content[0]
	f := &File{AdminScope: DefaultAdminScope}
	var routesNode *yaml.Node
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i], doc.Content[i+1]
		switch k.Value {
		case "admin_scope":
			if v.Kind != yaml.ScalarNode || oauthclients.ValidateScopes([]string{v.Value}) != nil {
				return nil, fail(v.Line, "admin_scope", "must be a scope token")
			}
			f.AdminScope = v.Value
		case "edge":
			e, err := parseEdge(v, "edge", true, fail)
			if err != nil {
				return nil, err
			}
			f.Edge = e
		case "routes":
			routesNode = v
		default:
			return nil, fail(k.Line, k.Value, "unknown field (known: %s)", strings.Join(topLevelKeys, ", "))
		}
	}
	if routesNode == nil || routesNode.Kind != yaml.SequenceNode {
		return nil, fail(doc.Line, "routes", "a list of routes is required")
	}
	seen := map[string]int{}
	for i, rn := range routesNode.Content {
		field := fmt.Sprintf("routes[%d]", i)
		r, err := parseRoute(rn, field, fail)
		if err != nil {
			return nil, err
		}
		if err := checkRoute(r, field, f.AdminScope, known, fail); err != nil {
			return nil, err
		}
		key := r.Method + " " + shapeOf(r.Path)
		if prev, dup := seen[key]; dup {
			return nil, fail(r.Line, field, "%s %s duplicates the route at line %d", r.Method, r.Path, prev)
		}
		seen[key] = r.Line
		f.Routes = append(f.Routes, r)
	}
	return f, nil
}

func parseRoute(rn *yaml.Node, field string, fail func(int, string, string, ...any) error) (Route, error) {
	if rn.Kind != yaml.MappingNode {
		return Route{}, fail(rn.Line, field, "a route is a mapping (method, path, mode, scopes, ...)")
	}
	r := Route{Line: rn.Line, Denied: true, Auth: []string{authn.CredentialBearer}}
	for j := 0; j+1 < len(rn.Content); j += 2 {
		k, v := rn.Content[j], rn.Content[j+1]
		ff := field + "." + k.Value
		var err error
		switch k.Value {
		case "name":
			err = scalar(v, &r.Name)
		case "method":
			err = scalar(v, &r.Method)
		case "path":
			err = scalar(v, &r.Path)
		case "mode":
			err = scalar(v, &r.Mode)
		case "job_type":
			err = scalar(v, &r.JobType)
		case "edge":
			r.Edge, err = parseEdge(v, ff, false, fail)
			if err != nil {
				return Route{}, err
			}
		case "auth":
			if r.Auth, err = parseAuth(v); err != nil {
				return Route{}, fail(v.Line, ff, "%v", err)
			}
		case "scopes":
			if v.Kind != yaml.SequenceNode {
				return Route{}, fail(v.Line, ff, "must be a list of scopes ([] allows any authenticated caller)")
			}
			r.Scopes = []string{}
			for _, s := range v.Content {
				var scope string
				if err := scalar(s, &scope); err != nil {
					return Route{}, fail(s.Line, ff, "%v", err)
				}
				if err := oauthclients.ValidateScopes([]string{scope}); err != nil {
					return Route{}, fail(s.Line, ff, "%v", err)
				}
				if !slices.Contains(r.Scopes, scope) {
					r.Scopes = append(r.Scopes, scope)
				}
			}
			r.Denied = false
		default:
			if !slices.Contains(syncKeys, k.Value) {
				return Route{}, fail(k.Line, ff, "unknown field (known: %s)", strings.Join(routeKeys, ", "))
			}
			if r.Sync == nil {
				r.Sync = defaultSync()
			}
			if err := parseSyncField(r.Sync, k.Value, v, ff, fail); err != nil {
				return Route{}, err
			}
		}
		if err != nil {
			return Route{}, fail(v.Line, ff, "%v", err)
		}
	}
	return r, nil
}

// parseAuth reads a route's auth list: one or both of bearer and api_key.
func parseAuth(v *yaml.Node) ([]string, error) {
	known := []string{authn.CredentialBearer, authn.CredentialAPIKey}
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		return nil, fmt.Errorf("must be a non-empty list of credentials (%s)", strings.Join(known, ", "))
	}
	var out []string
	for _, n := range v.Content {
		var kind string
		if err := scalar(n, &kind); err != nil {
			return nil, err
		}
		if !slices.Contains(known, kind) {
			return nil, fmt.Errorf("%q is not a credential (known: %s)", kind, strings.Join(known, ", "))
		}
		if !slices.Contains(out, kind) {
			out = append(out, kind)
		}
	}
	return out, nil
}

func scalar(n *yaml.Node, out *string) error {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return errors.New("must be a string")
	}
	*out = n.Value
	return nil
}

func checkRoute(r Route, field, adminScope string, known Known, fail func(int, string, string, ...any) error) error {
	if !slices.Contains(methods, r.Method) {
		return fail(r.Line, field+".method", "%q is not one of %s", r.Method, strings.Join(methods, ", "))
	}
	if err := checkPath(r.Path); err != nil {
		return fail(r.Line, field+".path", "%v", err)
	}
	if r.Name != "" && !routeNameRe.MatchString(r.Name) {
		return fail(r.Line, field+".name", "must match %s", routeNameRe)
	}
	switch r.Mode {
	case ModeAsync:
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			return fail(r.Line, field+".method", "an async route accepts jobs with POST or PUT")
		}
		if r.JobType == "" {
			return fail(r.Line, field+".job_type", "an async route names the job type it accepts")
		}
		if r.JobType == callbacks.JobType {
			return fail(r.Line, field+".job_type", "%s is the platform's own callback delivery: clients cannot submit it", r.JobType)
		}
		if !known.JobTypes.Has(r.JobType) {
			return fail(r.Line, field+".job_type", "no job type %q is declared in the job types file", r.JobType)
		}
		if len(r.Params()) > 0 {
			return fail(r.Line, field+".path", "async routes take no path parameters")
		}
	case ModeJobStatus:
		if r.Method != http.MethodGet {
			return fail(r.Line, field+".method", "a job-status route is a GET")
		}
		if len(r.Params()) != 1 {
			return fail(r.Line, field+".path", "a job-status route has exactly one path parameter, the job id (e.g. /v1/jobs/{id})")
		}
		if r.JobType != "" {
			return fail(r.Line, field+".job_type", "only async routes name a job type")
		}
	case ModeJobList:
		if r.Method != http.MethodGet {
			return fail(r.Line, field+".method", "a job-list route is a GET")
		}
		if len(r.Params()) != 0 {
			return fail(r.Line, field+".path", "a job-list route takes no path parameters (e.g. /v1/jobs)")
		}
		if r.JobType != "" {
			return fail(r.Line, field+".job_type", "only async routes name a job type")
		}
	case ModeJobCancel:
		if r.Method != http.MethodPost && r.Method != http.MethodDelete {
			return fail(r.Line, field+".method", "a job-cancel route is a POST (e.g. /v1/jobs/{id}/cancel) or a DELETE (e.g. /v1/jobs/{id})")
		}
		if len(r.Params()) != 1 {
			return fail(r.Line, field+".path", "a job-cancel route has exactly one path parameter, the job id")
		}
		if r.JobType != "" {
			return fail(r.Line, field+".job_type", "only async routes name a job type")
		}
	case ModeSync:
		if r.JobType != "" {
			return fail(r.Line, field+".job_type", "only async routes name a job type (a sync route's fallback is fallback_job_type)")
		}
		if r.Sync == nil {
			return fail(r.Line, field, "a sync route names a handler (a Go handler registered in the gateway) or an upstream")
		}
		if err := checkSync(r, field, known, fail); err != nil {
			return err
		}
	case "":
		return fail(r.Line, field+".mode", "is required (%s)", strings.Join(modes, ", "))
	default:
		return fail(r.Line, field+".mode", "%q is not one of %s", r.Mode, strings.Join(modes, ", "))
	}
	if r.Mode != ModeSync && r.Sync != nil {
		return fail(r.Line, field, "only sync routes take %s", strings.Join(syncKeys, ", "))
	}
	if isAdminPath(r.Path) && !r.Denied && !slices.Contains(r.Scopes, adminScope) {
		return fail(r.Line, field+".scopes", "a route under /admin/ must require the admin scope %q", adminScope)
	}
	return nil
}

func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") || p == "/" {
		return fmt.Errorf("%q must start with / and name a resource", p)
	}
	if len(p) > 256 {
		return errors.New("a path is at most 256 characters")
	}
	params := map[string]bool{}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%q has an empty, . or .. segment", p)
		}
		if !segmentRe.MatchString(seg) {
			return fmt.Errorf("segment %q is neither literal (unreserved characters) nor a {parameter} (lower-case name)", seg)
		}
		if strings.HasPrefix(seg, "{") {
			if params[seg] {
				return fmt.Errorf("parameter %s appears twice", seg)
			}
			params[seg] = true
		}
	}
	return nil
}

func isAdminPath(p string) bool { return p == "/admin" || strings.HasPrefix(p, "/admin/") }

// shapeOf replaces parameter names, so that /a/{x} and /a/{y} collide.
func shapeOf(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") {
			segs[i] = "{}"
		}
	}
	return strings.Join(segs, "/")
}
