"""Every action a person takes on a request, defined once.

An `Action` says who may take it, what they give (the API's body, the portal's form, the CLI's
options), the workflow update it becomes, and how the update's input is made from what they
gave and who signed in. The API's routes, the CLI's commands and the portal's forms are all
made from `ACTIONS`, and all of them run an action with `take`: a new action is one entry here.

    person signs in ─► given (body, form, options) ─► Action.input(person, given)
                   ─► take(): uploads filled in ─► workflow update (the request's, or the
                      assignment's of `expert_code`) ─► the new state

Idempotency is the front door's: `take` passes on an update id made from what the person
sent twice (the API's Idempotency-Key, the portal form's own id), and Temporal applies one id
once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import BaseModel, Field
from temporalio.client import Client

from domain.messages import (
    ACTOR_RULE,
    AcceptInput,
    AddExpertInput,
    AdoptionInput,
    ApproveInput,
    ConfirmCouncilInput,
    DeclineInput,
    DraftConclusionInput,
    ExtendAssignmentInput,
    ExtendInput,
    ReplaceExpertInput,
    RequestState,
    ReturnConclusionInput,
    ScreeningInput,
    SubmitOpinionInput,
    SupplementInput,
    WithdrawInput,
)
from domain.models import (
    Actor,
    AdoptionStatus,
    AssignmentView,
    ConclusionDraft,
    Model,
    OpinionInput,
)
from starter import service
from workflows.assignment import ExpertAssignmentWorkflow
from workflows.review import ReviewRequestWorkflow

Role = Literal["agency", "expert", "coordinator"]


class DeclineBody(Model):
    reason: Annotated[str, Field(min_length=3, max_length=5_000)]


@dataclass(frozen=True)
class Option:
    """One of the CLI's arguments: a positional (`decision`) or an option (`--note`), giving
    the field at the dotted path `field` of what the person gives."""

    flag: str
    field: str
    help: str = ""
    choices: tuple[str, ...] | None = None
    required: bool = False
    type: Callable[[str], Any] = str


@dataclass(frozen=True)
class Action:
    name: str  # the CLI's command, the API route's name
    path: str  # POST /requests/{id}/<path>
    role: Role  # who may take it
    summary: str
    update: Any  # the workflow update it becomes
    given: type[BaseModel] | None  # what the person gives; None: nothing
    # The update's input from who signed in and what they gave; by default what they gave,
    # with them as its actor where it has one.
    make: Callable[[Actor, Any], BaseModel] | None = None
    # The update goes to the assignment of the input's `expert_code`, not to the request.
    on_assignment: bool = False
    options: tuple[Option, ...] = ()

    @property
    def takes_documents(self) -> bool:
        return self.given is not None and "documents" in self.given.model_fields

    def input(self, person: Actor, given: BaseModel | None) -> BaseModel | None:
        """The update's input, its actor the person who signed in. Raises InvalidInput when
        what they gave names an actor itself."""
        if given is not None and "actor" in given.model_fields_set:
            raise service.InvalidInput("actor", ACTOR_RULE)
        if self.make is not None:
            return self.make(person, given)
        if given is not None and "actor" in type(given).model_fields:
            return given.model_copy(update={"actor": person})
        return given


async def take(
    client: Client,
    pool: asyncpg.Pool,
    action: Action,
    person: Actor,
    request_id: str,
    inp: BaseModel | None,
    update_id: str | None = None,
) -> RequestState | AssignmentView:
    """Runs the action: the input (from `action.input`) with its uploaded documents filled in
    from the uploads, which must be the person's, then the workflow update. Raises
    service.ActionError when it is refused."""
    if action.takes_documents:
        attached = await service.with_uploads(pool, inp.documents, person.ref, request_id)
        inp = inp.model_copy(update={"documents": attached})
    if action.on_assignment:
        return await service.assignment_update(
            client, request_id, inp.expert_code, action.update, inp, update_id=update_id
        )
    return await service.request_update(client, request_id, action.update, inp, update_id)


def _codes(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


RECOMMENDATIONS = ("endorse", "endorse_with_changes", "do_not_endorse")
REASON = Option("--reason", "reason", required=True)
DAYS = Option("--days", "days", "working days to add", required=True, type=int)

ACTIONS: dict[str, Action] = {
    a.name: a
    for a in [
        # --- the agency's ------------------------------------------------------------------
        Action(
            "supplement",
            "supplement",
            "agency",
            "Send the documents screening asked for",
            ReviewRequestWorkflow.supplement,
            SupplementInput,
            options=(Option("--note", "note", "what the documents answer"),),
        ),
        Action(
            "withdraw",
            "withdraw",
            "agency",
            "Withdraw the request, at any stage before the conclusion is delivered",
            ReviewRequestWorkflow.withdraw,
            WithdrawInput,
            options=(REASON,),
        ),
        Action(
            "answer",
            "adoption",
            "agency",
            "Answer how the conclusion was adopted (tiếp thu, giải trình)",
            ReviewRequestWorkflow.answer_adoption,
            AdoptionInput,
            options=(
                Option("--status", "answer.status", choices=tuple(s.value for s in AdoptionStatus)),
                Option("--explanation", "answer.explanation"),
                Option("--name", "answer.answered_by.name", "who answers for the agency"),
                Option("--email", "answer.answered_by.email"),
            ),
        ),
        # --- the expert's: on their own assignment, as the expert who signed in -----------
        Action(
            "accept",
            "assignment/accept",
            "expert",
            "Accept your invitation to the request's council",
            ExpertAssignmentWorkflow.accept,
            None,
            make=lambda person, _: AcceptInput(expert_code=person.code),
            on_assignment=True,
        ),
        Action(
            "decline",
            "assignment/decline",
            "expert",
            "Decline your invitation, with a reason",
            ExpertAssignmentWorkflow.decline,
            DeclineBody,
            make=lambda person, given: DeclineInput(expert_code=person.code, reason=given.reason),
            on_assignment=True,
            options=(REASON,),
        ),
        Action(
            "opinion",
            "assignment/opinion",
            "expert",
            "Submit your opinion",
            ExpertAssignmentWorkflow.submit_opinion,
            OpinionInput,
            make=lambda person, given: SubmitOpinionInput(expert_code=person.code, opinion=given),
            on_assignment=True,
            options=(
                Option("--recommendation", "recommendation", choices=RECOMMENDATIONS),
                Option("--summary", "summary"),
                Option("--comments", "comments_for_agency", "comments for the agency"),
                Option("--note", "confidential_note", "confidential note for the coordinator"),
            ),
        ),
        Action(
            "draft",
            "conclusion/draft",
            "expert",
            "Draft the council's conclusion (the chair)",
            ReviewRequestWorkflow.draft_conclusion,
            ConclusionDraft,
            make=lambda person, given: DraftConclusionInput(expert_code=person.code, draft=given),
            options=(
                Option("--recommendation", "recommendation", choices=RECOMMENDATIONS),
                Option("--text", "text"),
            ),
        ),
        # --- the coordinator's: what they give is the input, they are its actor ------------
        Action(
            "screen",
            "screening",
            "coordinator",
            "Screen: accept, ask for a supplement, or decline",
            ReviewRequestWorkflow.screen,
            ScreeningInput,
            options=(
                Option("decision", "decision", choices=("accept", "supplement", "decline")),
                Option("--note", "note", "what to supplement, or why it is declined"),
            ),
        ),
        Action(
            "confirm-council",
            "council/confirm",
            "coordinator",
            "Confirm the proposed council, as it is or edited",
            ReviewRequestWorkflow.confirm_council,
            ConfirmCouncilInput,
            options=(
                Option(
                    "--members", "members", "the council, as codes separated by commas", type=_codes
                ),
                Option("--chair", "chair", "which member chairs"),
            ),
        ),
        Action(
            "add-expert",
            "experts",
            "coordinator",
            "Add an expert when declines used up the alternates",
            ReviewRequestWorkflow.add_expert,
            AddExpertInput,
            options=(Option("expert", "expert_code", "the expert to invite"),),
        ),
        Action(
            "extend",
            "extend",
            "coordinator",
            "Extend the current stage's deadline",
            ReviewRequestWorkflow.extend_deadline,
            ExtendInput,
            options=(DAYS, REASON),
        ),
        Action(
            "extend-expert",
            "assignments/extend",
            "coordinator",
            "Extend one expert's respond-by or review-due date",
            ExpertAssignmentWorkflow.extend,
            ExtendAssignmentInput,
            on_assignment=True,
            options=(Option("expert", "expert_code", "whose date to extend"), DAYS, REASON),
        ),
        Action(
            "replace",
            "replace",
            "coordinator",
            "Replace an expert",
            ReviewRequestWorkflow.replace_expert,
            ReplaceExpertInput,
            options=(
                Option("expert", "expert_code", "the expert to replace"),
                Option(
                    "--by-expert", "replacement", "who replaces them (default: the next alternate)"
                ),
                REASON,
            ),
        ),
        Action(
            "approve",
            "conclusion/approve",
            "coordinator",
            "Approve and sign the conclusion",
            ReviewRequestWorkflow.approve_conclusion,
            ApproveInput,
        ),
        Action(
            "return",
            "conclusion/return",
            "coordinator",
            "Return the draft to the chair with comments",
            ReviewRequestWorkflow.return_conclusion,
            ReturnConclusionInput,
            options=(Option("--comments", "comments", required=True),),
        ),
    ]
}
