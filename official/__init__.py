"""Namespace of the project, laid out like the TF Model Garden (`official.<project>`)."""
