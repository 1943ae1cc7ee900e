"""Custom search attributes of request and assignment workflows: what an operator filters on
in the Temporal UI and with `temporal workflow list --query`. No personal data goes in them:
codes, stages, dates and counts only."""

from temporalio.common import SearchAttributeKey

STAGE = SearchAttributeKey.for_keyword("ReviewStage")
KIND = SearchAttributeKey.for_keyword("ReviewKind")
AGENCY = SearchAttributeKey.for_keyword("AgencyCode")
NEXT_DEADLINE = SearchAttributeKey.for_datetime("NextDeadline")
# A deadline of the request, or of one of its experts, went past its grace period.
OVERDUE = SearchAttributeKey.for_bool("ReviewOverdue")

# Review progress: opinions submitted, and opinions the council owes (its size).
OPINIONS_RECEIVED = SearchAttributeKey.for_int("OpinionsReceived")
OPINIONS_EXPECTED = SearchAttributeKey.for_int("OpinionsExpected")

# On each expert's assignment (a child of its request): the expert's registry code (never a
# name), where the assignment stands, and the date it is due (answer, then opinion).
EXPERT_CODE = SearchAttributeKey.for_keyword("ExpertCode")
ASSIGNMENT_STATE = SearchAttributeKey.for_keyword("AssignmentState")
ASSIGNMENT_DUE = SearchAttributeKey.for_datetime("AssignmentDue")

REQUEST = (STAGE, KIND, AGENCY, NEXT_DEADLINE, OVERDUE, OPINIONS_RECEIVED, OPINIONS_EXPECTED)
ASSIGNMENT = (EXPERT_CODE, ASSIGNMENT_STATE, ASSIGNMENT_DUE)
ALL = REQUEST + ASSIGNMENT
