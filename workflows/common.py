"""Activity options shared by the workflows. Kept apart from the workflow classes so the
sandbox re-imports as little as possible."""

from datetime import timedelta

from temporalio.common import RetryPolicy

# Persisting a transition is idempotent, so it may be retried for as long as the database is
# away: a request waits for PostgreSQL to come back rather than failing.
PERSIST_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=2),
        non_retryable_error_types=["UnknownRecipient"],
    ),
)

COMPUTE_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=10),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
)
