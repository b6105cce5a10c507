output "queue_urls" {
  description = "Queue URL per job type, primary region."
  value       = module.primary.queue_urls
}

output "dlq_urls" {
  description = "DLQ URL per job type, primary region."
  value       = module.primary.dlq_urls
}

output "service_policy_arns" {
  description = "IAM policy per service, primary region."
  value       = module.primary.service_policy_arns
}

output "secondary_queue_urls" {
  description = "Queue URL per job type, secondary region (empty without one)."
  value       = try(module.secondary[0].queue_urls, {})
}

output "service_role_arns" {
  description = "IAM role per service that calls AWS (IRSA; empty without eks_oidc_provider_arn): the eks.amazonaws.com/role-arn annotation of service account switchyard-<service>."
  value       = { for svc, r in aws_iam_role.service : svc => r.arn }
}
