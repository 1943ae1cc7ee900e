"""The request workflow: one request from intake to closed. `workflow.py` holds the class;
the rest are its parts, each findable by name (see the package's modules)."""

from workflows.review.workflow import ReviewRequestWorkflow

__all__ = ["ReviewRequestWorkflow"]
