// Package jobcatalog loads the declared job types from a YAML file: what
// the gateway accepts on POST /v1/jobs/{type} (body limit, JSON Schema) and
// how the worker runs each type (a Go handler by name or an HTTP target,
// concurrency, timeout).
//
// The file may refer to environment variables as ${NAME} or
// ${NAME:-default}; unknown fields, unknown handlers and invalid schemas
// are errors that name the file and the job type.
package jobcatalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/switchyard/switchyard/libs/callbacks"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/yamlenv"
)

// Limits on a job payload. SQS carries at most 256 KiB per message,
// attributes included; the rest is headroom for them.
const (
	DefaultMaxBodyBytes = 64 << 10
	MaxBodyBytesLimit   = 240 << 10
	// DefaultMaxJSONDepth bounds how deeply a payload's arrays and
	// objects nest; MaxJSONDepthLimit is the most a job type may allow.
	DefaultMaxJSONDepth = 32
	MaxJSONDepthLimit   = 1000
	DefaultConsumers    = 4
	DefaultTimeout      = 25 * time.Second
)

// Catalog is the set of declared job types.
type Catalog struct {
	types map[string]*JobType
}

// JobType is one declared job type.
type JobType struct {
	Name        string
	Description string
	// MaxBodyBytes caps the request body.
	MaxBodyBytes int64
	// MaxJSONDepth caps how deeply the payload's arrays and objects nest.
	MaxJSONDepth int
	// Handler names a Go handler registered in the worker; exclusive with HTTP.
	Handler string
	// HTTP is an HTTP target the worker POSTs the payload to.
	HTTP *HTTPTarget
	// Consumers is how many messages of this type a worker processes at once.
	Consumers int
	// Timeout bounds one attempt of the handler.
	Timeout time.Duration
	// Retry is how often and how far apart failed attempts are retried.
	Retry jobs.RetryPolicy
	// Retention is how long a finished job of this type is kept (with its
	// attempts and timeline) before the janitor deletes it; zero: the
	// janitor's default (SWITCHYARD_RETENTION_JOBS).
	Retention time.Duration

	// SchemaJSON is the payload's JSON Schema document as declared (the
	// default, {"type": "object"}, when none is), for clients that check a
	// payload before sending it (the operator console).
	SchemaJSON json.RawMessage

	schema *jsonschema.Schema
}

// HTTPTarget is where an HTTP job type delivers its payload.
type HTTPTarget struct {
	URL     string
	Timeout time.Duration
	Headers map[string]string
}

type fileDoc struct {
	JobTypes map[string]typeDoc `yaml:"job_types"`
}

type typeDoc struct {
	Description  string         `yaml:"description"`
	MaxBodyBytes int64          `yaml:"max_body_bytes"`
	MaxJSONDepth int            `yaml:"max_json_depth"`
	Schema       map[string]any `yaml:"schema"`
	Handler      string         `yaml:"handler"`
	HTTP         *httpDoc       `yaml:"http"`
	Consumers    int            `yaml:"consumers"`
	Timeout      time.Duration  `yaml:"timeout"`
	Retry        *retryDoc      `yaml:"retry"`
	Retention    time.Duration  `yaml:"retention"`
}

type retryDoc struct {
	Attempts int           `yaml:"attempts"`
	Base     time.Duration `yaml:"base"`
	Max      time.Duration `yaml:"max"`
}

type httpDoc struct {
	URL     string            `yaml:"url"`
	Timeout time.Duration     `yaml:"timeout"`
	Headers map[string]string `yaml:"headers"`
}

// Load reads and validates the catalog file at path.
func Load(path string) (*Catalog, error) {
	data, err := os.ReadFile(path) //nolint:gosec // the path is the operator's own configuration
	if err != nil {
		return nil, fmt.Errorf("reading job types: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("job types file %s: %w", path, err)
	}
	return c, nil
}

// Parse reads and validates a catalog document.
func Parse(data []byte) (*Catalog, error) {
	// First pass: structure and unknown fields, with the file's own line
	// numbers in errors.
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	var doc fileDoc
	if err := strict.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parsing YAML: %w", err)
	}
	// Second pass: expand ${NAME} in string values (never in comments).
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("parsing YAML: %w", err)
	}
	if err := yamlenv.Expand(&root); err != nil {
		return nil, err
	}
	doc = fileDoc{}
	if err := root.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parsing YAML: %w", err)
	}
	if len(doc.JobTypes) == 0 {
		return nil, errors.New("no job types declared under job_types")
	}
	c := &Catalog{types: map[string]*JobType{}}
	var errs []error
	for name, td := range doc.JobTypes {
		jt, err := build(name, td)
		if err != nil {
			errs = append(errs, fmt.Errorf("job type %q: %w", name, err))
			continue
		}
		c.types[name] = jt
	}
	// Declaring the callback delivery's type turns completion callbacks
	// on; it may tune consumers, timeout, retry and retention, never send
	// callbacks anywhere else.
	if cb, declared := c.types[callbacks.JobType]; declared && (cb.Handler != callbacks.JobType || cb.HTTP != nil) {
		errs = append(errs, fmt.Errorf("job type %q is the built-in callback delivery: its handler must be %q", callbacks.JobType, callbacks.JobType))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// CallbacksEnabled reports whether the catalog declares the callback
// delivery's job type, without which no submission may name a callback
// URL.
func (c *Catalog) CallbacksEnabled() bool { return c.Has(callbacks.JobType) }

func build(name string, td typeDoc) (*JobType, error) {
	if err := jobs.ValidateTypeName(name); err != nil {
		return nil, err
	}
	jt := &JobType{
		Name: name, Description: td.Description, MaxBodyBytes: td.MaxBodyBytes, MaxJSONDepth: td.MaxJSONDepth,
		Handler: td.Handler, Consumers: td.Consumers, Timeout: td.Timeout, Retention: td.Retention,
	}
	var errs []error
	if jt.Retention != 0 && jt.Retention < time.Minute {
		errs = append(errs, fmt.Errorf("retention %s must be at least 1m (or left out for the janitor's default)", jt.Retention))
	}
	switch {
	case jt.MaxBodyBytes == 0:
		jt.MaxBodyBytes = DefaultMaxBodyBytes
	case jt.MaxBodyBytes < 0 || jt.MaxBodyBytes > MaxBodyBytesLimit:
		errs = append(errs, fmt.Errorf("max_body_bytes %d must be between 1 and %d", jt.MaxBodyBytes, MaxBodyBytesLimit))
	}
	switch {
	case jt.MaxJSONDepth == 0:
		jt.MaxJSONDepth = DefaultMaxJSONDepth
	case jt.MaxJSONDepth < 0 || jt.MaxJSONDepth > MaxJSONDepthLimit:
		errs = append(errs, fmt.Errorf("max_json_depth %d must be between 1 and %d", jt.MaxJSONDepth, MaxJSONDepthLimit))
	}
	switch {
	case jt.Consumers == 0:
		jt.Consumers = DefaultConsumers
	case jt.Consumers < 0 || jt.Consumers > 256:
		errs = append(errs, fmt.Errorf("consumers %d must be between 1 and 256", jt.Consumers))
	}
	switch {
	case jt.Timeout == 0:
		jt.Timeout = DefaultTimeout
	case jt.Timeout < 0:
		errs = append(errs, fmt.Errorf("timeout %s must be positive", jt.Timeout))
	}
	jt.Retry = jobs.DefaultRetryPolicy()
	if td.Retry != nil {
		if td.Retry.Attempts != 0 {
			jt.Retry.Attempts = td.Retry.Attempts
		}
		if td.Retry.Base != 0 {
			jt.Retry.Base = td.Retry.Base
		}
		if td.Retry.Max != 0 {
			jt.Retry.Max = td.Retry.Max
		} else if jt.Retry.Max < jt.Retry.Base {
			jt.Retry.Max = jt.Retry.Base
		}
	}
	if err := jt.Retry.Validate(); err != nil {
		errs = append(errs, err)
	}
	if (td.Handler == "") == (td.HTTP == nil) {
		errs = append(errs, errors.New("exactly one of handler (a Go handler name) or http (a target) is required"))
	}
	if td.HTTP != nil {
		u, err := url.Parse(td.HTTP.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("http.url %q must be an absolute http(s) URL", td.HTTP.URL))
		}
		if td.HTTP.Timeout < 0 {
			errs = append(errs, fmt.Errorf("http.timeout %s must be positive", td.HTTP.Timeout))
		}
		jt.HTTP = &HTTPTarget{URL: td.HTTP.URL, Timeout: td.HTTP.Timeout, Headers: td.HTTP.Headers}
		if jt.HTTP.Timeout == 0 {
			jt.HTTP.Timeout = jt.Timeout
		}
	}
	schemaDoc := td.Schema
	if schemaDoc == nil {
		schemaDoc = map[string]any{"type": "object"}
	}
	sch, raw, err := compileSchema(name, schemaDoc)
	if err != nil {
		errs = append(errs, err)
	}
	jt.schema, jt.SchemaJSON = sch, raw
	return jt, errors.Join(errs...)
}

func compileSchema(name string, doc map[string]any) (*jsonschema.Schema, json.RawMessage, error) {
	// YAML numbers are Go ints; JSON Schema wants JSON values.
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("schema: %w", err)
	}
	val, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	loc := "urn:switchyard:job-type:" + name
	if err := c.AddResource(loc, val); err != nil {
		return nil, nil, fmt.Errorf("schema: %w", err)
	}
	sch, err := c.Compile(loc)
	if err != nil {
		return nil, nil, fmt.Errorf("schema: %w", err)
	}
	return sch, raw, nil
}

// Lookup returns the job type called name.
func (c *Catalog) Lookup(name string) (*JobType, bool) {
	jt, ok := c.types[name]
	return jt, ok
}

// Has reports whether a job type called name is declared.
func (c *Catalog) Has(name string) bool {
	_, ok := c.types[name]
	return ok
}

// Types returns every job type, sorted by name.
func (c *Catalog) Types() []*JobType {
	out := make([]*JobType, 0, len(c.types))
	for _, jt := range c.types {
		out = append(out, jt)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Names returns every job type name, sorted.
func (c *Catalog) Names() []string {
	types := c.Types()
	out := make([]string, len(types))
	for i, jt := range types {
		out[i] = jt.Name
	}
	return out
}

// Violation is one way a payload fails its schema.
type Violation struct {
	// Pointer is an RFC 6901 pointer to the offending part of the payload.
	Pointer string
	Detail  string
}

// Validate checks a payload (known to be valid JSON) against the type's
// schema and lists the violations; none means valid.
func (jt *JobType) Validate(payload []byte) ([]Violation, error) {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("decoding payload: %w", err)
	}
	err = jt.schema.Validate(inst)
	if err == nil {
		return nil, nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return nil, fmt.Errorf("validating payload: %w", err)
	}
	var out []Violation
	for _, u := range ve.BasicOutput().Errors {
		if u.Error == nil {
			continue
		}
		out = append(out, Violation{Pointer: u.InstanceLocation, Detail: u.Error.String()})
	}
	if len(out) == 0 {
		out = append(out, Violation{Pointer: "", Detail: ve.Error()})
	}
	return out, nil
}
