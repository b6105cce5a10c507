# The production overlay's AWS side (deployments/k8s/overlays/production):
#   terraform apply -var-file=production.tfvars
# Its job types are those of the overlay's jobs.yaml (switchyard-callback,
# which turns completion callbacks on, too): each needs its queue and DLQ here
# (deployments/productionpath checks that they match).
primary_region = "eu-west-1"
job_types = {
  "order-webhook" = {
    # Above the job type's timeout (20s): a handler still running is not
    # redelivered to another worker.
    visibility_timeout_seconds = 30
    max_receive_count          = 10
  }
  # Completion callbacks (15 s timeout, 8 attempts).
  "switchyard-callback" = {
    visibility_timeout_seconds = 30
    max_receive_count          = 10
  }
}
eks_oidc_provider_arn = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
kubernetes_namespace  = "switchyard"
