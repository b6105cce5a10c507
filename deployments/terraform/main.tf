module "primary" {
  source             = "./modules/switchyard-region"
  queue_prefix       = var.queue_prefix
  job_types          = var.job_types
  service_role_names = var.service_role_names
}

module "secondary" {
  source             = "./modules/switchyard-region"
  count              = var.secondary_region == null ? 0 : 1
  providers          = { aws = aws.secondary }
  queue_prefix       = var.queue_prefix
  job_types          = var.job_types
  service_role_names = {} # roles of the passive region's services are attached there
}
