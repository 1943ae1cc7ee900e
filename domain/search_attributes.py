"""Custom search attributes of a request workflow: what an operator filters on in the
Temporal UI and with `temporal workflow list --query`. No personal data goes in them."""

from temporalio.common import SearchAttributeKey

STAGE = SearchAttributeKey.for_keyword("ReviewStage")
KIND = SearchAttributeKey.for_keyword("ReviewKind")
AGENCY = SearchAttributeKey.for_keyword("AgencyCode")
NEXT_DEADLINE = SearchAttributeKey.for_datetime("NextDeadline")
# A deadline of the request, or of one of its experts, went past its grace period.
OVERDUE = SearchAttributeKey.for_bool("ReviewOverdue")

ALL = (STAGE, KIND, AGENCY, NEXT_DEADLINE, OVERDUE)
