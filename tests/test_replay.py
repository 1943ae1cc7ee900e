"""Determinism: histories of every path a request takes replay against today's workflow code.

`tests/histories/*.json` are real histories recorded from the lifecycle (regenerate with
`python -m tests.record_histories`; every run of a request continued as new is one file); a
change to the workflows that would break requests already running in production fails here
first. `tests/histories/earlier/` keeps histories of runs recorded before a patch, which the
recorder does not overwrite.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.conftest import CONVERTER
from worker import SANDBOX, WORKFLOWS

# earlier/: runs recorded before a patch (workflow.patched) whose old path the code keeps.
HISTORIES = sorted((Path(__file__).parent / "histories").glob("**/*.json"))


def replayer() -> Replayer:
    return Replayer(workflows=WORKFLOWS, workflow_runner=SANDBOX, data_converter=CONVERTER)


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_committed_history_replays(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_histories_are_committed():
    kinds = {p.stem.split("--")[0] for p in HISTORIES}
    assert {
        "review-closed",
        "review-withdrawn",
        "review-declined",
        "review-lapsed",
        "review-quorum",
        "review-replaced",
        "review-continued-in-review",
        "review-continued-awaiting-confirmation",
        "expert-submitted",
        "expert-expired",
        "expert-cancelled",
        "notification-delivered",
        "notification-failed",
        "notification-continued",
    } <= kinds
