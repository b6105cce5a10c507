variable "primary_region" {
  description = "Region that serves traffic."
  type        = string
  default     = "eu-west-1"
}

variable "secondary_region" {
  description = "Passive region with the same queues, for failover (null: none)."
  type        = string
  default     = null
}

variable "queue_prefix" {
  description = "Queue names are <prefix><job type> and <prefix><job type>-dlq (SWITCHYARD_QUEUE_PREFIX)."
  type        = string
  default     = "switchyard-"
}

variable "job_types" {
  description = "Job types of the deployment's jobs.yaml and their queue settings: every job type there needs its queue and DLQ here."
  type = map(object({
    visibility_timeout_seconds = optional(number, 30)
    max_receive_count          = optional(number, 10)
    retention_seconds          = optional(number, 345600)  # 4 days
    dlq_retention_seconds      = optional(number, 1209600) # 14 days
  }))
  # No default: the queues must be those of the job types the deployment
  # serves (its jobs.yaml), e.g. production.tfvars for the production
  # overlay; `switchyard init` fails when one is missing.
  validation {
    condition     = alltrue([for t in keys(var.job_types) : can(regex("^[a-z][a-z0-9-]{0,62}$", t))])
    error_message = "Job type names are lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "service_role_names" {
  description = "IAM roles the services run as (IRSA or ECS task roles), per service; their policies are attached to them. Empty: policies only."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = { "app" = "switchyard" }
}

variable "eks_oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider: with it, one IAM role per service that calls AWS (relay, worker, replay, init), assumable only by its service account (IRSA). Null: no roles (attach the policies with service_role_names)."
  type        = string
  default     = null
}

variable "kubernetes_namespace" {
  description = "Namespace of the service accounts the IRSA roles trust (deployments/k8s/overlays/production: switchyard)."
  type        = string
  default     = "switchyard"
}
