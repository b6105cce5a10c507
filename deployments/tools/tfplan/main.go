// Command tfplan evaluates the parts of deployments/terraform that decide
// whether the services can run, without the AWS provider: the queue and
// DLQ names of every job type, the IAM policy document of every service
// (the module's local.statements, as its aws_iam_policy_document renders
// them), and which services get an IRSA role. It reads the .tf files
// themselves, so a test that enforces these policies tests what
// Terraform would create, not a copy.
//
//	go run . -root ../../terraform -var-file ../../terraform/production.tfvars \
//	    -region us-east-1 -account 000000000000
//
// It prints JSON (see Plan).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
)

func main() {
	var opts options
	flag.StringVar(&opts.root, "root", "../../terraform", "the root module's directory")
	flag.StringVar(&opts.varFile, "var-file", "", "a .tfvars file, as terraform apply -var-file")
	flag.StringVar(&opts.region, "region", "us-east-1", "region the ARNs name")
	flag.StringVar(&opts.account, "account", "000000000000", "account id the ARNs name")
	flag.Parse()
	plan, err := evaluate(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tfplan:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(plan); err != nil {
		fmt.Fprintln(os.Stderr, "tfplan:", err)
		os.Exit(1)
	}
}
