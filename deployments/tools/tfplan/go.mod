// Module tfplan evaluates what deployments/terraform declares (queue names,
// the services' IAM policy documents, the IRSA roles) without the AWS
// provider, which cannot be downloaded here, so that tests can hold the
// code to the policies as written. Kept out of the services' module graph.
module github.com/switchyard/switchyard/deployments/tools/tfplan

go 1.26.8

require (
	github.com/hashicorp/hcl/v2 v2.25.0
	github.com/zclconf/go-cty v1.20.0
)

require (
	github.com/agext/levenshtein v1.2.1 // indirect
	github.com/apparentlymart/go-textseg/v15 v15.0.0 // indirect
	github.com/apparentlymart/go-textseg/v17 v17.0.1 // indirect
	github.com/mitchellh/go-wordwrap v1.0.1 // indirect
	golang.org/x/mod v0.29.0 // indirect
	golang.org/x/sync v0.18.0 // indirect
	golang.org/x/text v0.31.0 // indirect
	golang.org/x/tools v0.38.0 // indirect
)
