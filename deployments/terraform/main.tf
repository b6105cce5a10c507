module "primary" {
  source             = "./modules/switchyard-region"
  queue_prefix       = var.queue_prefix
  job_types          = var.job_types
  service_role_names = merge(var.service_role_names, { for svc, r in aws_iam_role.service : svc => r.name })
}

module "secondary" {
  source             = "./modules/switchyard-region"
  count              = var.secondary_region == null ? 0 : 1
  providers          = { aws = aws.secondary }
  queue_prefix       = var.queue_prefix
  job_types          = var.job_types
  service_role_names = {} # roles of the passive region's services are attached there
}

# The services that call AWS, each with its own Kubernetes service account
# (deployments/k8s/base/serviceaccounts.yaml); the gateway and the token
# service never touch SQS and get no role.
locals {
  aws_services = toset(["relay", "worker", "replay", "init"])
  oidc_issuer  = var.eks_oidc_provider_arn == null ? "" : replace(var.eks_oidc_provider_arn, "/^.*oidc-provider\\//", "")
}

# IAM roles for service accounts (IRSA): the pod of service account
# switchyard-<service> in var.kubernetes_namespace, and only it, may assume
# its role. The role's ARN goes on the service account
# (eks.amazonaws.com/role-arn): terraform output service_role_arns.
data "aws_iam_policy_document" "irsa_trust" {
  for_each = var.eks_oidc_provider_arn == null ? toset([]) : local.aws_services
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.eks_oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.kubernetes_namespace}:switchyard-${each.key}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "service" {
  for_each           = data.aws_iam_policy_document.irsa_trust
  name               = "${var.queue_prefix}${each.key}"
  description        = "Switchyard ${each.key} (Kubernetes service account ${var.kubernetes_namespace}/switchyard-${each.key})"
  assume_role_policy = each.value.json
}
