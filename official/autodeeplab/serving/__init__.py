"""SavedModel export for TF Serving and batch prediction."""
