"""The churn pipeline: binary classification on synthetic customer data at any scale."""
