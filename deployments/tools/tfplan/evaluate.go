package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

type options struct {
	root, varFile, region, account string
}

// Plan is what Terraform would create that the services depend on.
type Plan struct {
	// QueuePrefix is the root module's var.queue_prefix.
	QueuePrefix string `json:"queue_prefix"`
	// JobTypes maps a job type to its queues and settings.
	JobTypes map[string]JobType `json:"job_types"`
	// Policies maps a service to its IAM policy document.
	Policies map[string]json.RawMessage `json:"policies"`
	// RoleServices are the services that get an IRSA role.
	RoleServices []string `json:"role_services"`
	// Outputs are the root module's output names.
	Outputs []string `json:"outputs"`
}

// JobType is one job type's queue and DLQ as the module declares them.
type JobType struct {
	Queue                    string `json:"queue"`
	DLQ                      string `json:"dlq"`
	QueueARN                 string `json:"queue_arn"`
	DLQARN                   string `json:"dlq_arn"`
	VisibilityTimeoutSeconds int    `json:"visibility_timeout_seconds"`
	MaxReceiveCount          int    `json:"max_receive_count"`
	RetentionSeconds         int    `json:"retention_seconds"`
	DLQRetentionSeconds      int    `json:"dlq_retention_seconds"`
}

// functions are the Terraform functions the evaluated expressions use.
var functions = map[string]function.Function{
	"concat":     stdlib.ConcatFunc,
	"jsonencode": stdlib.JSONEncodeFunc,
	"merge":      stdlib.MergeFunc,
	"keys":       stdlib.KeysFunc,
	"toset":      stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
	"tolist":     stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
	"trimsuffix": stdlib.TrimSuffixFunc,
}

func evaluate(o options) (Plan, error) {
	p := hclparse.NewParser()
	rootVars, err := variables(p, o.root, o.varFile)
	if err != nil {
		return Plan{}, err
	}
	root, err := parseDir(p, o.root)
	if err != nil {
		return Plan{}, err
	}
	plan := Plan{JobTypes: map[string]JobType{}, Policies: map[string]json.RawMessage{}}
	// The primary region's module and what the root passes it.
	var module *hclsyntax.Block
	for _, b := range blocks(root, "module") {
		if b.Labels[0] == "primary" {
			module = b
		}
	}
	if module == nil {
		return plan, errors.New(`no module "primary" in the root module`)
	}
	src, diags := module.Body.Attributes["source"].Expr.Value(nil)
	if diags.HasErrors() {
		return plan, diags
	}
	rootCtx := &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(rootVars)}, Functions: functions}
	moduleVars := map[string]cty.Value{}
	for _, name := range []string{"queue_prefix", "job_types"} {
		attr, ok := module.Body.Attributes[name]
		if !ok {
			return plan, fmt.Errorf(`module "primary" is not given %s`, name)
		}
		v, diags := attr.Expr.Value(rootCtx)
		if diags.HasErrors() {
			return plan, diags
		}
		moduleVars[name] = v
	}
	plan.QueuePrefix = moduleVars["queue_prefix"].AsString()
	mod, err := parseDir(p, filepath.Join(o.root, src.AsString()))
	if err != nil {
		return plan, err
	}

	// The queues: each resource's name, evaluated per job type.
	arn := func(service, name string) string {
		return fmt.Sprintf("arn:aws:%s:%s:%s:%s", service, o.region, o.account, name)
	}
	queues := map[string]map[string]cty.Value{"jobs": {}, "dlq": {}}
	for _, b := range blocks(mod, "resource") {
		if b.Labels[0] != "aws_sqs_queue" {
			continue
		}
		kind := b.Labels[1]
		if _, ok := queues[kind]; !ok {
			return plan, fmt.Errorf("unexpected queue resource aws_sqs_queue.%s", kind)
		}
		for it := moduleVars["job_types"].ElementIterator(); it.Next(); {
			k, v := it.Element()
			ctx := &hcl.EvalContext{Functions: functions, Variables: map[string]cty.Value{
				"var":  cty.ObjectVal(moduleVars),
				"each": cty.ObjectVal(map[string]cty.Value{"key": k, "value": v}),
			}}
			name, diags := b.Body.Attributes["name"].Expr.Value(ctx)
			if diags.HasErrors() {
				return plan, diags
			}
			queues[kind][k.AsString()] = cty.ObjectVal(map[string]cty.Value{
				"name": name, "arn": cty.StringVal(arn("sqs", name.AsString())),
				"id":  cty.StringVal(fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s", o.region, o.account, name.AsString())),
				"url": cty.StringVal(fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s", o.region, o.account, name.AsString())),
			})
			settings := func(attr string) int {
				n, _ := v.GetAttr(attr).AsBigFloat().Int64()
				return int(n)
			}
			jt := plan.JobTypes[k.AsString()]
			jt.VisibilityTimeoutSeconds, jt.MaxReceiveCount = settings("visibility_timeout_seconds"), settings("max_receive_count")
			jt.RetentionSeconds, jt.DLQRetentionSeconds = settings("retention_seconds"), settings("dlq_retention_seconds")
			if kind == "jobs" {
				jt.Queue, jt.QueueARN = name.AsString(), arn("sqs", name.AsString())
			} else {
				jt.DLQ, jt.DLQARN = name.AsString(), arn("sqs", name.AsString())
			}
			plan.JobTypes[k.AsString()] = jt
		}
	}
	resources := map[string]cty.Value{
		"aws_sqs_queue": cty.ObjectVal(map[string]cty.Value{"jobs": mapOrEmpty(queues["jobs"]), "dlq": mapOrEmpty(queues["dlq"])}),
		"aws_kms_key":   cty.ObjectVal(map[string]cty.Value{"queues": cty.ObjectVal(map[string]cty.Value{"arn": cty.StringVal(arn("kms", "key/switchyard"))})}),
	}
	locals, err := evalLocals(mod, func(locals map[string]cty.Value) *hcl.EvalContext {
		vars := map[string]cty.Value{"var": cty.ObjectVal(moduleVars), "local": cty.ObjectVal(locals)}
		for k, v := range resources {
			vars[k] = v
		}
		vars["data"] = cty.ObjectVal(map[string]cty.Value{"aws_region": cty.ObjectVal(map[string]cty.Value{
			"current": cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(o.region)})})})
		return &hcl.EvalContext{Variables: vars, Functions: functions}
	}, true)
	if err != nil {
		return plan, err
	}
	statements, ok := locals["statements"]
	if !ok {
		return plan, errors.New("the module has no local.statements")
	}
	for it := statements.ElementIterator(); it.Next(); {
		svc, list := it.Element()
		doc, err := policyDocument(list)
		if err != nil {
			return plan, fmt.Errorf("policy of %s: %w", svc.AsString(), err)
		}
		plan.Policies[svc.AsString()] = doc
	}

	// The root's IRSA roles (local.aws_services) and outputs.
	rootLocals, err := evalLocals(root, func(locals map[string]cty.Value) *hcl.EvalContext {
		return &hcl.EvalContext{Functions: functions, Variables: map[string]cty.Value{
			"var": cty.ObjectVal(rootVars), "local": cty.ObjectVal(locals)}}
	}, false)
	if err != nil {
		return plan, err
	}
	if s, ok := rootLocals["aws_services"]; ok {
		for it := s.ElementIterator(); it.Next(); {
			_, v := it.Element()
			plan.RoleServices = append(plan.RoleServices, v.AsString())
		}
	}
	sort.Strings(plan.RoleServices)
	for _, b := range blocks(root, "output") {
		plan.Outputs = append(plan.Outputs, b.Labels[0])
	}
	sort.Strings(plan.Outputs)
	return plan, nil
}

func mapOrEmpty(m map[string]cty.Value) cty.Value {
	if len(m) == 0 {
		return cty.EmptyObjectVal
	}
	return cty.ObjectVal(m)
}

// policyDocument renders a list of {actions, resources} as the module's
// aws_iam_policy_document does: one Allow statement each.
func policyDocument(list cty.Value) (json.RawMessage, error) {
	type statement struct {
		Effect   string   `json:"Effect"`
		Action   []string `json:"Action"`
		Resource []string `json:"Resource"`
	}
	doc := struct {
		Version   string      `json:"Version"`
		Statement []statement `json:"Statement"`
	}{Version: "2012-10-17"}
	for it := list.ElementIterator(); it.Next(); {
		_, st := it.Element()
		var s statement
		s.Effect = "Allow"
		for name, dst := range map[string]*[]string{"actions": &s.Action, "resources": &s.Resource} {
			raw, err := ctyjson.SimpleJSONValue{Value: st.GetAttr(name)}.MarshalJSON()
			if err != nil {
				return nil, err
			}
			if err := json.Unmarshal(raw, dst); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
		doc.Statement = append(doc.Statement, s)
	}
	return json.Marshal(doc)
}

// evalLocals evaluates every local of body, in dependency order (by
// retrying until nothing more resolves). With strict, a local that never
// resolves is an error; otherwise it is left out.
func evalLocals(body *hclsyntax.Body, ctx func(map[string]cty.Value) *hcl.EvalContext, strict bool) (map[string]cty.Value, error) {
	pending := map[string]hcl.Expression{}
	for _, b := range blocks(body, "locals") {
		for name, attr := range b.Body.Attributes {
			pending[name] = attr.Expr
		}
	}
	done := map[string]cty.Value{}
	for len(pending) > 0 {
		var last hcl.Diagnostics
		progress := false
		for name, expr := range pending {
			v, diags := expr.Value(ctx(done))
			if diags.HasErrors() {
				last = diags
				continue
			}
			done[name] = v
			delete(pending, name)
			progress = true
		}
		if !progress {
			if strict {
				return nil, fmt.Errorf("locals that do not evaluate: %w", last)
			}
			break
		}
	}
	return done, nil
}

// variables returns the root module's variables: their defaults (with the
// optional() defaults of their types), overridden by varFile.
func variables(p *hclparse.Parser, dir, varFile string) (map[string]cty.Value, error) {
	body, err := parseDir(p, dir)
	if err != nil {
		return nil, err
	}
	given := map[string]cty.Value{}
	if varFile != "" {
		f, diags := p.ParseHCLFile(varFile)
		if diags.HasErrors() {
			return nil, diags
		}
		for name, attr := range f.Body.(*hclsyntax.Body).Attributes {
			v, diags := attr.Expr.Value(nil)
			if diags.HasErrors() {
				return nil, diags
			}
			given[name] = v
		}
	}
	vars := map[string]cty.Value{}
	for _, b := range blocks(body, "variable") {
		name := b.Labels[0]
		ty, defaults := cty.DynamicPseudoType, (*typeexpr.Defaults)(nil)
		if t, ok := b.Body.Attributes["type"]; ok {
			var diags hcl.Diagnostics
			ty, defaults, diags = typeexpr.TypeConstraintWithDefaults(t.Expr)
			if diags.HasErrors() {
				return nil, diags
			}
		}
		v, ok := given[name]
		if !ok {
			d, has := b.Body.Attributes["default"]
			if !has {
				return nil, fmt.Errorf("variable %s has no default and %s does not set it", name, varFile)
			}
			var diags hcl.Diagnostics
			if v, diags = d.Expr.Value(nil); diags.HasErrors() {
				return nil, diags
			}
		}
		if defaults != nil && !v.IsNull() {
			v = defaults.Apply(v)
		}
		cv, err := convert.Convert(v, ty)
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", name, err)
		}
		vars[name] = cv
	}
	for name := range given {
		if _, ok := vars[name]; !ok {
			return nil, fmt.Errorf("%s sets %s, which the root module does not declare", varFile, name)
		}
	}
	return vars, nil
}

// parseDir parses every .tf file of dir into one body.
func parseDir(p *hclparse.Parser, dir string) (*hclsyntax.Body, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no .tf files in %s", dir)
	}
	merged := &hclsyntax.Body{Attributes: hclsyntax.Attributes{}}
	for _, f := range files {
		file, diags := p.ParseHCLFile(f)
		if diags.HasErrors() {
			return nil, diags
		}
		body := file.Body.(*hclsyntax.Body)
		merged.Blocks = append(merged.Blocks, body.Blocks...)
	}
	return merged, nil
}

func blocks(body *hclsyntax.Body, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}
