terraform {
  required_version = ">= 1.6"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.10"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.6"
    }
  }
  # State lives in a bucket made once by hand (README: "Deploy to a fresh project"); cloudbuild.yaml
  # passes -backend-config="bucket=<state bucket>".
  backend "gcs" {
    prefix = "leafloaf/state"
  }
}

provider "google" {
  project = var.project
  region  = var.region
}
