// Package configref generates the configuration reference
// (docs/configuration-reference.md) from the services' own configuration
// structs: every environment variable a service reads (its conf tag's env
// name), its default, whether it is required or a secret, and its help
// text. It reads the Go sources (go/ast), so the reference cannot drift
// from the code: TestReferenceIsCurrent fails when the committed page
// differs, and `go test ./internal/configref -update` rewrites it.
package configref

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Module is the module path; imports under it are read from the tree.
const Module = "github.com/switchyard/switchyard"

// Roots are the services and the configuration struct each reads.
var Roots = []Root{
	{Service: "gateway", Dir: "services/gateway/app", Type: "Config"},
	{Service: "tokens", Dir: "services/tokens/internal/app", Type: "Config"},
	{Service: "relay", Dir: "services/relay/internal/app", Type: "Config"},
	{Service: "worker", Dir: "services/worker/app", Type: "Config"},
	{Service: "replay", Dir: "services/replay/internal/app", Type: "Config"},
}

// Root is one service's configuration struct.
type Root struct {
	Service, Dir, Type string
}

// Setting is one environment variable.
type Setting struct {
	Env      string
	Services []string
	Default  string
	Required bool
	Secret   bool
	Help     string
	// Where is the struct field that declares it (package dir and field).
	Where string
}

// Collect reads every root's settings under the repository root.
func Collect(root string) ([]Setting, error) {
	r := &reader{root: root, pkgs: map[string]*pkg{}}
	byEnv := map[string]*Setting{}
	var errs []error
	for _, rt := range Roots {
		p, err := r.load(rt.Dir)
		if err != nil {
			return nil, err
		}
		spec, ok := p.types[rt.Type]
		if !ok {
			return nil, fmt.Errorf("%s: no type %s", rt.Dir, rt.Type)
		}
		r.walk(p, spec, rt.Service, byEnv, &errs, map[string]bool{})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := make([]Setting, 0, len(byEnv))
	for _, s := range byEnv {
		sort.Strings(s.Services)
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Env != out[j].Env {
			return out[i].Env < out[j].Env
		}
		return strings.Join(out[i].Services, ",") < strings.Join(out[j].Services, ",")
	})
	return out, nil
}

type typeSpec struct {
	expr ast.Expr
	file *ast.File
}

type pkg struct {
	dir   string
	types map[string]typeSpec
}

type reader struct {
	root string
	pkgs map[string]*pkg
}

func (r *reader) load(dir string) (*pkg, error) {
	if p, ok := r.pkgs[dir]; ok {
		return p, nil
	}
	files, err := filepath.Glob(filepath.Join(r.root, dir, "*.go"))
	if err != nil {
		return nil, err
	}
	p := &pkg{dir: dir, types: map[string]typeSpec{}}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", f, err)
		}
		for _, d := range file.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.TYPE {
				continue
			}
			for _, s := range g.Specs {
				ts := s.(*ast.TypeSpec)
				p.types[ts.Name.Name] = typeSpec{expr: ts.Type, file: file}
			}
		}
	}
	if len(p.types) == 0 {
		return nil, fmt.Errorf("%s: no types (wrong directory?)", dir)
	}
	r.pkgs[dir] = p
	return p, nil
}

// resolve finds the declaration of the type expression e, written in
// file of p: a type of p, or of a package of this module.
func (r *reader) resolve(p *pkg, file *ast.File, e ast.Expr) (*pkg, typeSpec, bool) {
	switch t := e.(type) {
	case *ast.Ident:
		spec, ok := p.types[t.Name]
		return p, spec, ok
	case *ast.SelectorExpr:
		alias, ok := t.X.(*ast.Ident)
		if !ok {
			return nil, typeSpec{}, false
		}
		for _, imp := range file.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			name := filepath.Base(path)
			if imp.Name != nil {
				name = imp.Name.Name
			}
			if name != alias.Name || !strings.HasPrefix(path, Module+"/") {
				continue
			}
			q, err := r.load(strings.TrimPrefix(path, Module+"/"))
			if err != nil {
				return nil, typeSpec{}, false
			}
			spec, ok := q.types[t.Sel.Name]
			return q, spec, ok
		}
	}
	return nil, typeSpec{}, false
}

func (r *reader) walk(p *pkg, spec typeSpec, service string, byEnv map[string]*Setting, errs *[]error, seen map[string]bool) {
	st, ok := spec.expr.(*ast.StructType)
	if !ok {
		// An alias or a named type of another: follow it.
		if q, next, ok := r.resolve(p, spec.file, spec.expr); ok {
			r.walk(q, next, service, byEnv, errs, seen)
		}
		return
	}
	for _, field := range st.Fields.List {
		tag := ""
		if field.Tag != nil {
			raw, _ := strconv.Unquote(field.Tag.Value)
			tag = reflect.StructTag(raw).Get("conf")
		}
		if tag == "-" {
			continue
		}
		names := []string{"(embedded)"}
		if len(field.Names) > 0 {
			if !field.Names[0].IsExported() {
				continue // conf reads exported fields only
			}
			names = []string{field.Names[0].Name}
		}
		where := p.dir + "." + names[0]
		opts := parseTag(tag)
		if env, ok := opts["env"]; ok {
			// One row per declaration: services that declare a variable
			// alike share it; one with another default or help gets its own.
			key := env + "\x00" + opts["default"] + "\x00" + opts["help"]
			s := byEnv[key]
			if s == nil {
				s = &Setting{Env: env, Default: opts["default"], Help: opts["help"], Where: where}
				byEnv[key] = s
			}
			_, s.Required = opts["required"]
			_, mask := opts["mask"]
			s.Secret = s.Secret || mask || isSecretType(field.Type)
			if !contains(s.Services, service) {
				s.Services = append(s.Services, service)
			}
			continue
		}
		q, next, ok := r.resolve(p, spec.file, field.Type)
		if !ok {
			*errs = append(*errs, fmt.Errorf("%s: a setting without env: in its conf tag (every setting names its variable)", where))
			continue
		}
		key := q.dir + "." + fmt.Sprint(field.Type)
		if seen[key] {
			continue
		}
		seen[key] = true
		r.walk(q, next, service, byEnv, errs, seen)
		delete(seen, key)
	}
}

// isSecretType reports config.Secret fields (masked whatever their tag).
func isSecretType(e ast.Expr) bool {
	s, ok := e.(*ast.SelectorExpr)
	return ok && s.Sel.Name == "Secret" && fmt.Sprint(s.X) == "config"
}

// parseTag reads a conf tag: comma-separated key:value options; help,
// written last, runs to the end of the tag.
func parseTag(tag string) map[string]string {
	opts := map[string]string{}
	rest := tag
	if i := strings.Index(tag, "help:"); i >= 0 {
		opts["help"] = tag[i+len("help:"):]
		rest = strings.TrimSuffix(tag[:i], ",")
	}
	for _, part := range strings.Split(rest, ",") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, ":")
		opts[k] = v
	}
	return opts
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// cell escapes what Markdown would read as table or HTML syntax.
var cell = strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;")

// Markdown renders settings as the reference page.
func Markdown(settings []Setting) string {
	var b strings.Builder
	b.WriteString(`# Configuration reference

Every environment variable each service reads, generated from the
services' configuration structs (their ` + "`conf`" + ` tags) by
` + "`go test ./internal/configref -update`" + `; ` + "`go tool task test`" + ` fails
when this page and the code disagree. What to set, and when, is in
[configuration.md](configuration.md). *secret*: masked in logs, and a
` + "`vault:<mount>/<path>#<key>`" + ` reference is read from Vault.

| variable | services | default | | meaning |
|---|---|---|---|---|
`)
	for _, s := range settings {
		def := "`" + s.Default + "`"
		if s.Default == "" {
			def = ""
		}
		var marks []string
		if s.Required {
			marks = append(marks, "required")
		}
		if s.Secret {
			marks = append(marks, "*secret*")
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", s.Env, strings.Join(s.Services, ", "), cell.Replace(def),
			strings.Join(marks, ", "), cell.Replace(s.Help))
	}
	return b.String()
}
