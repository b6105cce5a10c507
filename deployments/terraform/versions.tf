# Switchyard's AWS resources: per job type an SQS queue and its DLQ (with
# redrive and redrive-allow policies, KMS-encrypted), one IAM policy per
# service with exactly the SQS and KMS actions it uses, and (with an EKS
# OIDC provider) one IRSA role per service. A second region gets the same
# queues and policies for active/passive failover; its database and Vault
# replicas and the Route 53 failover records are not here (see
# docs/runbook-region-failover.md).
terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }
}

provider "aws" {
  region = var.primary_region
  default_tags { tags = var.tags }
}

provider "aws" {
  alias  = "secondary"
  region = coalesce(var.secondary_region, var.primary_region)
  default_tags { tags = var.tags }
}
