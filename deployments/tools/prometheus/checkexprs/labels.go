package main

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	promparser "github.com/prometheus/prometheus/promql/parser"
)

// metricLabels maps a metric to the labels its Go declaration gives it;
// metrics declared some other way are absent (their labels go unchecked).
var metricLabels map[string][]string

// legendLabel is a Grafana legend's {{label}}.
var legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// scrapeLabels are added by Prometheus to every series it scrapes.
var scrapeLabels = []string{"job", "instance"}

// declaredLabels reads the metric declarations of the Go sources under
// repo: New{Counter,Gauge,Histogram,Summary}Vec(opts, []string{...}) (of
// prometheus, promauto or a promauto factory) and
// prometheus.NewDesc("name", help, []string{...}, ...) with literal names,
// and the same constructors without Vec (no labels).
func declaredLabels(repo string) (map[string][]string, error) {
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(repo, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == ".dev" || d.Name() == "tools") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return fmt.Errorf("parsing %s: %w", path, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			// prometheus.NewCounterVec, promauto.With(r).NewCounterVec, a
			// factory's f.NewCounterVec: the options' literal
			// "switchyard_" name tells a metric.
			switch fn := sel.Sel.Name; {
			case fn == "NewDesc" && len(call.Args) >= 3:
				if name, ok := stringLit(call.Args[0]); ok && strings.HasPrefix(name, "switchyard_") {
					if l, ok := stringSlice(call.Args[2]); ok {
						out[name] = l
					}
				}
			case strings.HasPrefix(fn, "New") && strings.HasSuffix(fn, "Vec") && len(call.Args) == 2:
				if name, ok := optsName(call.Args[0]); ok {
					if l, ok := stringSlice(call.Args[1]); ok {
						out[name] = l
					}
				}
			case fn == "NewCounter" || fn == "NewGauge" || fn == "NewHistogram" || fn == "NewSummary":
				if len(call.Args) == 1 {
					if name, ok := optsName(call.Args[0]); ok {
						out[name] = []string{}
					}
				}
			}
			return true
		})
		return nil
	})
	return out, err
}

func stringLit(e ast.Expr) (string, bool) {
	b, ok := e.(*ast.BasicLit)
	if !ok || b.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(b.Value)
	return s, err == nil
}

// stringSlice reads []string{"a", "b"} (or nil, no labels).
func stringSlice(e ast.Expr) ([]string, bool) {
	if id, ok := e.(*ast.Ident); ok && id.Name == "nil" {
		return []string{}, true
	}
	cl, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil, false
	}
	var out []string
	for _, el := range cl.Elts {
		s, ok := stringLit(el)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// optsName reads the literal Name of prometheus.XxxOpts{Name: "..."}.
func optsName(e ast.Expr) (string, bool) {
	if u, ok := e.(*ast.UnaryExpr); ok {
		e = u.X
	}
	cl, ok := e.(*ast.CompositeLit)
	if !ok {
		return "", false
	}
	for _, el := range cl.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
			if s, ok := stringLit(kv.Value); ok && strings.HasPrefix(s, "switchyard_") {
				return s, true
			}
		}
	}
	return "", false
}

// labelSet is what labels an expression's result carries; known is false
// when that cannot be told (a metric declared indirectly, label_replace).
type labelSet struct {
	known  bool
	labels map[string]bool
}

func (l labelSet) has(name string) bool { return l.labels[name] }

func (l labelSet) sorted() []string {
	var out []string
	for k := range l.labels {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func setOf(names ...string) labelSet {
	s := labelSet{known: true, labels: map[string]bool{}}
	for _, n := range names {
		s.labels[n] = true
	}
	return s
}

var unknown = labelSet{}

// labelsOf returns the labels of e's result, and the uses of labels that
// its operands do not have.
func labelsOf(e promparser.Expr) (labelSet, []error) {
	switch v := e.(type) {
	case *promparser.VectorSelector:
		base, declared := metricLabels[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(v.Name, "_bucket"), "_count"), "_sum")]
		if !declared {
			return unknown, nil
		}
		s := setOf(append(append([]string{}, base...), scrapeLabels...)...)
		if strings.HasSuffix(v.Name, "_bucket") {
			s.labels["le"] = true
		}
		var errs []error
		for _, m := range v.LabelMatchers {
			if m.Name == model.MetricNameLabel || s.has(m.Name) {
				continue
			}
			errs = append(errs, fmt.Errorf("%s has no label %s (it has %v)", v.Name, m.Name, s.sorted()))
		}
		return s, errs
	case *promparser.MatrixSelector:
		return labelsOf(v.VectorSelector)
	case *promparser.SubqueryExpr:
		return labelsOf(v.Expr)
	case *promparser.ParenExpr:
		return labelsOf(v.Expr)
	case *promparser.UnaryExpr:
		return labelsOf(v.Expr)
	case *promparser.NumberLiteral, *promparser.StringLiteral:
		return setOf(), nil
	case *promparser.StepInvariantExpr:
		return labelsOf(v.Expr)
	case *promparser.AggregateExpr:
		inner, errs := labelsOf(v.Expr)
		if v.Without {
			if !inner.known {
				return unknown, errs
			}
			out := setOf(inner.sorted()...)
			for _, g := range v.Grouping {
				delete(out.labels, g)
			}
			return out, errs
		}
		if inner.known {
			for _, g := range v.Grouping {
				if !inner.has(g) {
					errs = append(errs, fmt.Errorf("%s by (%s): its operand has no label %s (it has %v)", v.Op, strings.Join(v.Grouping, ", "), g, inner.sorted()))
				}
			}
		}
		return setOf(v.Grouping...), errs
	case *promparser.Call:
		var errs []error
		var first labelSet
		found := false
		for i, a := range v.Args {
			s, e := labelsOf(a)
			errs = append(errs, e...)
			if v.Func.Name == "histogram_quantile" && i == 1 {
				if s.known {
					s = setOf(s.sorted()...)
					delete(s.labels, "le")
				}
				return s, errs
			}
			if !found && a.Type() != promparser.ValueTypeScalar && a.Type() != promparser.ValueTypeString {
				first, found = s, true
			}
		}
		switch v.Func.Name {
		case "label_replace", "label_join", "absent", "absent_over_time", "vector", "scalar", "time":
			return unknown, errs
		}
		if !found {
			return setOf(), errs
		}
		return first, errs
	case *promparser.BinaryExpr:
		l, errs := labelsOf(v.LHS)
		r, rerrs := labelsOf(v.RHS)
		errs = append(errs, rerrs...)
		if v.LHS.Type() == promparser.ValueTypeScalar {
			return r, errs
		}
		if v.VectorMatching != nil && v.VectorMatching.Card == promparser.CardOneToOne && v.VectorMatching.On {
			return setOf(v.VectorMatching.MatchingLabels...), errs
		}
		return l, errs
	}
	return unknown, []error{errors.New("an expression of a kind the label check does not know")}
}
