// Command checkexprs checks the PromQL of Switchyard's Grafana dashboards
// and alert rules against the code: every expression parses, and every
// metric it selects is one a service exports (a "switchyard_..." name
// found in the repository's Go sources, a pgxpool statistic, or a Go
// runtime, process or scrape metric). A renamed metric fails the check
// instead of leaving an empty panel or an alert that never fires. So does
// a label the metric does not have: in a selector's matchers, in a `by`
// grouping, or in a panel's legend ({{label}}), for every metric whose
// labels the Go sources declare literally (prometheus.New*Vec with a
// []string of names, or prometheus.NewDesc).
//
//	go run ./checkexprs -repo ../../.. -dashboards ../../grafana -rules ../../prometheus/alerts.yml
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

var (
	exportedName = regexp.MustCompile(`"(switchyard_[a-z0-9_]+)"`)
	// pgxpoolprometheus's names, exported with the switchyard_ prefix.
	pgxpoolNames = []string{"acquire_count", "acquire_duration_ns", "acquired_conns", "canceled_acquire_count", "constructing_conns",
		"empty_acquire", "empty_acquire_wait_time_ns", "idle_conns", "max_conns", "total_conns", "new_conns_count",
		"max_lifetime_destroy_count", "max_idle_destroy_count"}
	otherPrefixes = []string{"go_", "process_", "promhttp_"}
	// Grafana's variables, replaced by something PromQL parses.
	grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")
	promql      = parser.NewParser(parser.Options{})
)

func main() {
	repo := flag.String("repo", ".", "repository root whose Go sources name the exported metrics")
	dashboards := flag.String("dashboards", "", "directory of Grafana dashboard JSON files")
	rules := flag.String("rules", "", "Prometheus rule file")
	flag.Parse()
	known, err := exported(*repo)
	if err == nil {
		metricLabels, err = declaredLabels(*repo)
	}
	if err == nil {
		err = errors.Join(checkDashboards(*dashboards, known), checkRules(*rules, known))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// exported collects the metric names the repository's Go code exports.
func exported(repo string) (map[string]bool, error) {
	known := map[string]bool{"up": true}
	for _, n := range pgxpoolNames {
		known["switchyard_pgxpool_"+n] = true
	}
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
		src, err := os.ReadFile(path) //nolint:gosec // walking the repository
		if err != nil {
			return err
		}
		for _, m := range exportedName.FindAllSubmatch(src, -1) {
			known[string(m[1])] = true
		}
		return nil
	})
	if len(known) < 20 {
		return nil, fmt.Errorf("found only %d metric names under %s: wrong -repo?", len(known), repo)
	}
	return known, err
}

func check(where, expr string, known map[string]bool) error {
	_, err := checkLabelled(where, expr, "", known)
	return err
}

// checkLabelled checks expr and, when legend is not empty, that every
// {{label}} it names is a label of expr's result.
func checkLabelled(where, expr, legend string, known map[string]bool) (parser.Expr, error) {
	e, err := promql.ParseExpr(grafanaVars.Replace(expr))
	if err != nil {
		return nil, fmt.Errorf("%s: %q does not parse: %w", where, expr, err)
	}
	var errs []error
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if !isKnown(vs.Name, known) {
			errs = append(errs, fmt.Errorf("%s: %q selects %s, which no service exports", where, expr, vs.Name))
		}
		return nil
	})
	result, labelErrs := labelsOf(e)
	for _, le := range labelErrs {
		errs = append(errs, fmt.Errorf("%s: %q: %w", where, expr, le))
	}
	if legend != "" && result.known {
		for _, m := range legendLabel.FindAllStringSubmatch(legend, -1) {
			if !result.has(m[1]) {
				errs = append(errs, fmt.Errorf("%s: legend %q names label %s, which %q does not have (it has %v)", where, legend, m[1], expr, result.sorted()))
			}
		}
	}
	return e, errors.Join(errs...)
}

func isKnown(name string, known map[string]bool) bool {
	for _, p := range otherPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	for _, suffix := range []string{"", "_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && known[base] {
			return true
		}
	}
	return false
}

type panel struct {
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
}

func checkDashboards(dir string, known map[string]bool) error {
	if dir == "" {
		return nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return fmt.Errorf("listing dashboards in %s: %w", dir, err)
	}
	if len(files) == 0 {
		return fmt.Errorf("no dashboards in %s", dir)
	}
	sort.Strings(files)
	var errs []error
	for _, f := range files {
		raw, err := os.ReadFile(f) //nolint:gosec // the dashboards directory given
		if err != nil {
			return err
		}
		var d struct {
			Panels []panel `json:"panels"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		n := 0
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				for _, t := range p.Targets {
					n++
					_, err := checkLabelled(fmt.Sprintf("%s: panel %q", filepath.Base(f), p.Title), t.Expr, t.LegendFormat, known)
					errs = append(errs, err)
				}
				walk(p.Panels)
			}
		}
		walk(d.Panels)
		fmt.Printf("%s: %d expressions checked\n", f, n)
	}
	return errors.Join(errs...)
}

func checkRules(file string, known map[string]bool) error {
	if file == "" {
		return nil
	}
	groups, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		return fmt.Errorf("%s: %w", file, errors.Join(errs...))
	}
	var out []error
	n := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			n++
			out = append(out, check(fmt.Sprintf("%s: rule %s", filepath.Base(file), r.Alert+r.Record), r.Expr, known))
		}
	}
	fmt.Printf("%s: %d rules checked\n", file, n)
	return errors.Join(out...)
}
