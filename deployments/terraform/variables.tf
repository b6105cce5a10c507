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
  description = "Job types (deployments/config/jobs.yaml) and their queue settings."
  type = map(object({
    visibility_timeout_seconds = optional(number, 30)
    max_receive_count          = optional(number, 10)
    retention_seconds          = optional(number, 345600)  # 4 days
    dlq_retention_seconds      = optional(number, 1209600) # 14 days
  }))
  default = {
    "text-stats" = {}
    "webhook"    = {}
  }
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
