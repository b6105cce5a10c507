# One region's queues, their key and the services' policies.
terraform {
  required_providers {
    aws = { source = "hashicorp/aws" }
  }
}

variable "queue_prefix" { type = string }
variable "job_types" {
  type = map(object({
    visibility_timeout_seconds = number
    max_receive_count          = number
    retention_seconds          = number
    dlq_retention_seconds      = number
  }))
}
variable "service_role_names" { type = map(string) }

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

# A customer-managed key for the queues: messages are encrypted at rest;
# the services' roles get its use through their policies below.
resource "aws_kms_key" "queues" {
  description             = "Switchyard SQS messages"
  enable_key_rotation     = true
  deletion_window_in_days = 30
}

resource "aws_kms_alias" "queues" {
  name          = "alias/${var.queue_prefix}queues"
  target_key_id = aws_kms_key.queues.key_id
}

resource "aws_sqs_queue" "dlq" {
  for_each                          = var.job_types
  name                              = "${var.queue_prefix}${each.key}-dlq"
  message_retention_seconds         = each.value.dlq_retention_seconds
  kms_master_key_id                 = aws_kms_key.queues.arn
  kms_data_key_reuse_period_seconds = 300
}

resource "aws_sqs_queue" "jobs" {
  for_each                          = var.job_types
  name                              = "${var.queue_prefix}${each.key}"
  visibility_timeout_seconds        = each.value.visibility_timeout_seconds
  message_retention_seconds         = each.value.retention_seconds
  receive_wait_time_seconds         = 10
  kms_master_key_id                 = aws_kms_key.queues.arn
  kms_data_key_reuse_period_seconds = 300
  # A crash loop ends in the DLQ after max_receive_count receives (the
  # worker's own retries stay below it: SWITCHYARD_SQS_MAX_RECEIVE_COUNT).
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = each.value.max_receive_count
  })
}

# Only its own job queue may send to a DLQ by redrive.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  for_each  = var.job_types
  queue_url = aws_sqs_queue.dlq[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.jobs[each.key].arn]
  })
}

locals {
  job_queue_arns = [for q in aws_sqs_queue.jobs : q.arn]
  dlq_arns       = [for q in aws_sqs_queue.dlq : q.arn]
  kms            = [aws_kms_key.queues.arn]
  # What each service does with SQS, and nothing more.
  statements = {
    # relay: sends job messages and (for the worker) dead letters.
    relay = [
      { actions = ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"], resources = concat(local.job_queue_arns, local.dlq_arns) },
      { actions = ["kms:GenerateDataKey", "kms:Decrypt"], resources = local.kms },
    ]
    # worker: receives, hides (retries, heartbeats) and deletes job messages.
    worker = [
      { actions = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"], resources = local.job_queue_arns },
      { actions = ["kms:Decrypt"], resources = local.kms },
    ]
    # replay: drains the DLQs into its store.
    replay = [
      { actions = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"], resources = local.dlq_arns },
      { actions = ["kms:Decrypt"], resources = local.kms },
    ]
    # init (the Kubernetes Job, `switchyard init`): checks that every job
    # type of the catalog has its queue and DLQ here (it creates none).
    init = [
      { actions = ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"], resources = concat(local.job_queue_arns, local.dlq_arns) },
    ]
  }
}

data "aws_iam_policy_document" "service" {
  for_each = local.statements
  dynamic "statement" {
    for_each = each.value
    content {
      effect    = "Allow"
      actions   = statement.value.actions
      resources = statement.value.resources
    }
  }
}

resource "aws_iam_policy" "service" {
  for_each    = local.statements
  name        = "${var.queue_prefix}${each.key}-${data.aws_region.current.name}"
  description = "Switchyard ${each.key}: its SQS and KMS actions only"
  policy      = data.aws_iam_policy_document.service[each.key].json
}

resource "aws_iam_role_policy_attachment" "service" {
  for_each   = { for svc, role in var.service_role_names : svc => role if contains(keys(local.statements), svc) }
  role       = each.value
  policy_arn = aws_iam_policy.service[each.key].arn
}

output "queue_urls" { value = { for k, q in aws_sqs_queue.jobs : k => q.url } }
output "dlq_urls" { value = { for k, q in aws_sqs_queue.dlq : k => q.url } }
output "service_policy_arns" { value = { for k, p in aws_iam_policy.service : k => p.arn } }
