"""`advisory`: every action of the lifecycle from a terminal.

Bad input is one clear line on stderr (the field and the rule) and a non-zero exit code; nothing
is sent to the engine until the input is valid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio.service import RPCError

from domain.calendar import VN_TZ
from domain.models import Actor, RequestKind, RequestSubmission
from infra.documents import StoreSettingError
from infra.settings import Settings, get_settings
from starter import actions, service
from starter.registry import REGISTRIES

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class UsageError(Exception):
    """Input a person gave that cannot be used; the message is the whole explanation."""


# --- formatting --------------------------------------------------------------------------------


def describe_validation(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "input"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "invalid input: " + "; ".join(parts)


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(VN_TZ).strftime("%Y-%m-%d %H:%M")


def _print_json(data: Any) -> None:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _read_json(path: str) -> Any:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UsageError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from err


def print_state(state: service.RequestState) -> None:
    print(f"{state.request_id}  [{state.stage.value}]  {state.kind.value}  {state.agency_code}")
    print(f"  {state.title}")
    if state.stage_deadline:
        print(f"  stage due: {_when(state.stage_deadline)}")
    if state.waiting_for:
        print(f"  waiting for: {state.waiting_for}")
    if state.overdue:
        print("  OVERDUE: a deadline is past its grace period")
    for a in state.assignments:
        due = a.due_at or a.respond_by
        rec = f"  {a.recommendation.value}" if a.recommendation else ""
        rec += "  OVERDUE" if a.overdue else ""
        print(
            f"  - {a.expert_code:<12} {a.role.value:<7} {a.state.value:<10} due {_when(due)}{rec}"
        )
    if state.conclusion:
        c = state.conclusion
        print(f"  conclusion v{c.version}: {c.recommendation.value} (by {c.drafted_by})")


# --- commands -----------------------------------------------------------------------------------


async def _client():
    from infra.codec import KeyError_
    from infra.settings import TemporalSettingError
    from infra.temporal import connect

    try:
        return await connect()
    except (KeyError_, TemporalSettingError) as err:  # no payload keys, a malformed setting
        raise RuntimeError(str(err)) from err
    except Exception as err:  # connection refused, bad TLS settings...
        raise RuntimeError(f"cannot reach Temporal ({err}); is the stack up (`make up`)?") from err


async def _pool(settings: Settings, url: str | None = None, max_size: int = 2):
    from db.pool import open_pool

    return await open_pool(settings, max_size=max_size, url=url)


async def _signed_in(settings: Settings, role: str = "coordinator") -> Actor:
    """The person the CLI acts as (ADVISORY_CLI_AS), as the registry names them."""
    configured = settings.resolve_cli_as()
    as_role, _, code = configured.partition(":")
    if as_role != role or not code:
        raise UsageError(
            f"ADVISORY_CLI_AS: {'an' if role[0] in 'aeiou' else 'a'} {role}'s action from the "
            f"CLI needs ADVISORY_CLI_AS={role}:<code>"
            + (f" (it is {configured!r})" if configured else "")
        )
    pool = await _pool(settings)
    try:
        return await service.signed_in(pool, role, code)
    except service.ActionError as err:
        raise UsageError(f"ADVISORY_CLI_AS: {err}") from err
    finally:
        await pool.close()


def _model(cls: type[BaseModel], data: Any) -> Any:
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise UsageError(describe_validation(err)) from err


async def _attach(pool, settings: Settings, paths: list[str], owner: str) -> list[dict]:
    """Uploads the files as `owner`'s (all or none) and returns their references."""
    from infra.documents import document_store
    from starter import documents

    store = document_store(settings, pool)

    limits = documents.Limits.of(settings)
    if len(paths) > limits.files:
        raise UsageError(f"--attach: at most {limits.files} files")
    done: list[str] = []
    try:
        for path in map(Path, paths):
            try:
                with path.open("rb") as file:
                    doc = await documents.upload(pool, store, file, path.name, owner, limits=limits)
            except FileNotFoundError as err:
                raise UsageError(f"--attach: no such file {path}") from err
            done.append(doc.id)
    except BaseException:
        await documents.discard(pool, done)
        raise
    return [{"id": i} for i in done]


async def cmd_submit(args, settings: Settings) -> None:
    data = _read_json(args.file)
    # Bad input is refused before anything is sent or uploaded (the uploads' place held).
    placeholder = [{"id": "D-000000000000"}] if args.attach else []
    submission = _model(
        RequestSubmission, {**data, "documents": data.get("documents") or placeholder}
    )
    client = await _client()
    pool = await _pool(settings)
    try:
        if args.attach:
            owner = f"agency:{(data.get('agency') or {}).get('code', '')}"
            data["documents"] = [
                *data.get("documents", []),
                *await _attach(pool, settings, args.attach, owner),
            ]
            submission = _model(RequestSubmission, data)
        result = await service.submit(
            client, pool, submission, settings.load_policy(), task_queue=settings.task_queue
        )
    finally:
        await pool.close()
    if args.json:
        _print_json({"request_id": result.request_id, "created": result.created})
    elif result.created:
        print(f"submitted {result.request_id}")
    else:
        print(f"{result.request_id} already exists for this agency reference; nothing changed")


async def _person(args, settings: Settings, pool, action: actions.Action) -> Actor:
    """Who the CLI acts as: a coordinator as ADVISORY_CLI_AS says, an expert as the command
    names them, an agency as the request's own."""
    if action.role == "coordinator":
        return await _signed_in(settings)
    if action.role == "expert":
        code = args.expert
    else:
        async with pool.acquire() as conn:
            code = await conn.fetchval(
                "SELECT agency_code FROM requests WHERE id = $1", args.request
            )
        if code is None:
            raise UsageError(f"no request {args.request}")
    try:
        return await service.signed_in(pool, action.role, code)
    except service.ActionError as err:
        raise UsageError(str(err)) from err


def _given(args, action: actions.Action, documents: list[dict] | None = None) -> Any:
    """What the person gives: --file's JSON, the options over it, and uploaded documents."""
    if action.given is None:
        return None
    data = _read_json(args.file) if args.file else {}
    if not isinstance(data, dict):
        raise UsageError(f"{args.file}: must be a JSON object, as the API's body")
    for option in action.options:
        value = getattr(args, _dest(option))
        if value is None:
            continue
        *parents, last = option.field.split(".")
        at = data
        for name in parents:
            at = at.setdefault(name, {})
        at[last] = value
    if documents is not None:
        data["documents"] = [*data.get("documents", []), *documents]
    return _model(action.given, data)


async def cmd_action(args, settings: Settings) -> None:
    """One action of the catalogue (starter/actions.py): its options make what the person
    gives, the person is who the CLI acts as, and `actions.take` runs it."""
    action = actions.ACTIONS[args.command]
    # Bad input is refused before anything is sent or uploaded (the uploads' place held).
    placeholder = [{"id": "D-000000000000"}] if getattr(args, "attach", None) else None
    given = _given(args, action, placeholder)
    pool = await _pool(settings)
    try:
        person = await _person(args, settings, pool, action)
        client = await _client()
        if placeholder:
            given = _given(args, action, await _attach(pool, settings, args.attach, person.ref))
        inp = action.input(person, given)
        result = await actions.take(client, pool, action, person, args.request, inp)
    finally:
        await pool.close()
    if args.json:
        _print_json(result)
    elif action.on_assignment:
        due = result.due_at or result.respond_by
        print(f"{args.request} {result.expert_code}: {result.state.value}, due {_when(due)}")
    else:
        print_state(result)


def _dest(option: actions.Option) -> str:
    return "opt_" + option.field.replace(".", "_")


async def cmd_list(args, settings: Settings) -> None:
    from db import queries as q
    from domain.models import Stage

    if args.stage and args.stage not in {s.value for s in Stage}:
        raise UsageError(
            f"--stage: must be one of {', '.join(s.value for s in Stage)}, not {args.stage!r}"
        )
    if args.query:
        if args.stage or args.agency or args.kind or args.overdue or args.stuck:
            raise UsageError("--query: give either a query or the filters, not both")
        await _list_by_query(args)
        return
    pool = await _pool(settings)
    async with pool.acquire() as conn:
        rows = await q.list_requests(
            conn,
            stage=args.stage,
            agency=args.agency,
            kind=args.kind,
            overdue=args.overdue,
            stuck=args.stuck,
            limit=args.limit,
        )
    await pool.close()
    if args.json:
        _print_json([dict(r) for r in rows])
        return
    if not rows:
        print("no requests")
    for r in rows:
        flag = "OVERDUE " if r["overdue"] else ""
        print(
            f"{r['id']:<13} {r['stage']:<11} {r['kind']:<18} {r['agency_code']:<8} "
            f"due {_when(r['next_deadline']):<16}  {flag}{r['title'][:60]}"
        )


async def _list_by_query(args) -> None:
    """The UI's own filter, run against Temporal's visibility store: requests and expert
    assignments alike, with the search attributes an operator filters on."""
    from temporalio.service import RPCError

    from domain import search_attributes as sa

    client = await _client()
    found = []
    try:
        async for w in client.list_workflows(args.query, limit=args.limit):
            found.append(w)
    except RPCError as err:
        raise UsageError(f"--query: {err.message}") from err
    rows = []
    for w in found:
        attrs = w.typed_search_attributes
        rows.append(
            {
                "workflow_id": w.id,
                "type": w.workflow_type,
                "status": w.status.name.lower() if w.status else None,
                **{k.name: attrs.get(k) for k in sa.ALL if attrs.get(k) is not None},
            }
        )
    if args.json:
        _print_json(rows)
        return
    if not rows:
        print("no workflows match")
    for r in rows:
        if r["type"] == "ExpertAssignmentWorkflow":
            what = (
                f"{r.get('ExpertCode', '-'):<10} {r.get('AssignmentState', '-'):<10} "
                f"due {_when(r.get('AssignmentDue'))}"
            )
        else:
            opinions = (
                f"{r['OpinionsReceived']}/{r['OpinionsExpected']} opinions"
                if "OpinionsExpected" in r
                else ""
            )
            what = (
                f"{r.get('ReviewStage', '-'):<11} {r.get('AgencyCode', '-'):<8} "
                f"due {_when(r.get('NextDeadline')):<16} {opinions}"
                + ("  OVERDUE" if r.get("ReviewOverdue") else "")
            )
        print(f"{r['workflow_id']:<40} {r['status']:<10} {what}")


async def cmd_show(args, settings: Settings) -> None:
    from db import queries as q

    client = await _client()
    state = await service.request_state(client, args.request)
    pool = await _pool(settings)
    async with pool.acquire() as conn:
        trail = await q.audit_trail(conn, args.request)
    await pool.close()
    if args.json:
        _print_json({"state": state.model_dump(mode="json"), "audit": [dict(r) for r in trail]})
        return
    print_state(state)
    print("  audit trail:")
    for r in trail:
        stage = f" → {r['stage']}" if r["stage"] else ""
        who = r["actor_name"] or r["actor"]
        print(f"    {_when(r['at'])}  {who[:40]:<40} {r['action']}{stage}")


async def cmd_tasks(args, settings: Settings) -> None:
    from db import queries as q

    pool = await _pool(settings)
    async with pool.acquire() as conn:
        rows = await q.expert_tasks(conn, args.expert)
    await pool.close()
    if args.json:
        _print_json([dict(r) for r in rows])
        return
    if not rows:
        print(f"no open tasks for {args.expert}")
    for r in rows:
        if r["state"] == "invited":
            todo, due = "answer the invitation", r["respond_by"]
        elif r["state"] == "accepted":
            todo, due = "submit your opinion", r["due_at"]
        else:
            todo, due = "draft the conclusion (chair)", r["next_deadline"]
        print(f"{r['request_id']:<13} {todo:<30} due {_when(due):<16}  {r['title'][:50]}")


async def cmd_registry(args, settings: Settings) -> None:
    """experts | agencies | coordinators | operators: import, list, show, deactivate."""
    from db import queries as q
    from starter.registry import RegistryFileError, import_file

    registry = REGISTRIES[args.command]
    one = registry.one
    pool = await _pool(settings)
    try:
        if args.action in ("import", "seed"):
            if not args.target and registry.name != "experts":
                raise UsageError(f"{args.command} import: name the .csv or .json file")
            path = Path(args.target) if args.target else settings.experts_file
            try:
                report = await import_file(pool, registry, path)
            except RegistryFileError as err:
                raise UsageError(str(err)) from err
            if args.json:
                _print_json(report.as_dict())
            else:
                print(report.summary())
            if report.errors:
                raise UsageError(f"{len(report.errors)} row(s) rejected; the others applied")
            return
        if args.action == "list":
            async with pool.acquire() as conn:
                rows = await q.registry_rows(conn, registry.name)
            if args.json:
                _print_json([dict(r) for r in rows])
            for r in [] if args.json else rows:
                print(_registry_line(registry.name, r) + ("" if r["active"] else "  (inactive)"))
            return
        if not args.target:
            raise UsageError(f"{args.command} {args.action}: name the {one}'s code")
        async with pool.acquire() as conn:
            if args.action == "deactivate":
                changed = await q.set_active(conn, registry.name, args.target, False)
                if changed is None:
                    raise UsageError(f"no {one} {args.target}")
                print(f"{args.target} " + ("deactivated" if changed else "was already inactive"))
                return
            rows = await q.registry_rows(conn, registry.name, args.target)
            webhook = (
                await q.webhook_endpoint(conn, args.target) if registry.name == "agencies" else None
            )
    finally:
        await pool.close()
    if not rows:
        raise UsageError(f"no {one} {args.target}")
    r = rows[0]
    if args.json:
        _print_json(dict(r))
        return
    print(_registry_show(registry.name, r) + ("" if r["active"] else "\n  (inactive)"))
    if webhook is not None:
        state = "enabled" if webhook["enabled"] else "disabled"
        print(f"  webhook: {webhook['url']} ({state})")


def _registry_line(name: str, r) -> str:
    if name == "experts":
        levels = ", ".join(f"{f}:{lv}" for f, lv in sorted(r["expertise"].items()))
        return f"{r['code']:<10} {r['load']}/{r['load_limit']}  {levels:<40} {r['organisation']}"
    if name == "agencies":
        aliases = f"  (also: {'; '.join(r['aliases'])})" if r["aliases"] else ""
        return f"{r['code']:<10} {r['name']}{aliases}"
    if name == "operators":
        return f"{r['code']:<10} {r['name']} <{r['email']}>"
    return f"{r['code']:<10} {r['name']}, {r['title']} <{r['email']}>"


def _registry_show(name: str, r) -> str:
    if name == "agencies":
        lines = [f"{r['code']}  {r['name']}  (notifications in {r['language']})"]
        lines += [f"  also known as: {a}" for a in r["aliases"]]
        lines += [f"  contact: {c['name']} <{c['email']}>" for c in r["contacts"]]
        return "\n".join(lines)
    if name == "coordinators":
        return f"{r['code']}  {r['name']}, {r['title']} <{r['email']}> ({r['language']})"
    if name == "operators":
        return f"{r['code']}  {r['name']} <{r['email']}> ({r['language']})"
    lines = [
        f"{r['code']}  {r['name']} <{r['email']}>",
        f"  {r['organisation']} · {r['member_association']}",
        "  expertise: " + ", ".join(f"{f} (level {lv})" for f, lv in r["expertise"].items()),
        f"  languages: {', '.join(r['languages'])}; load {r['load']}/{r['load_limit']}",
    ]
    if r["conflicts"]:
        lines.append(f"  declared conflicts: {'; '.join(r['conflicts'])}")
    lines += [f"  unavailable {p['start']} to {p['end']}" for p in r["unavailable"]]
    return "\n".join(lines)


async def cmd_council(args, settings: Settings) -> None:
    from db import queries as q

    pool = await _pool(settings)
    async with pool.acquire() as conn:
        row = await q.get_council(conn, args.request)
    await pool.close()
    if row is None:
        raise UsageError(f"no council proposed for {args.request} (yet)")
    if args.json:
        _print_json(dict(row))
        return
    p = row["proposal"]
    print(
        f"council of {args.request}: {row['status']}"
        + (f" by {row['confirmed_by']}" if row["confirmed_by"] else "")
    )
    if p.get("shortfall"):
        print(f"  SHORT: {p['shortfall']}")
    for m in p["members"]:
        print(f"  {m['role']:<7} {m['expert_code']:<10} {m['reason']}")
    for i, a in enumerate(p["alternates"], start=1):
        print(f"  alt {i:<3} {a['expert_code']:<10} {a['reason']}")
    if p.get("excluded"):
        print("  not proposed:")
        for line in p["excluded"]:
            print(f"    {line}")


def _recipient(args) -> tuple[str, str | None]:
    chosen = [
        (kind, value)
        for kind, value in (
            ("agency", args.agency),
            ("expert", args.expert),
            ("coordinator", args.coordinator or None),
            ("operator", args.operator or None),
        )
        if value
    ]
    if len(chosen) != 1:
        raise UsageError(
            "recipient: give exactly one of --agency CODE, --expert CODE, --coordinator, --operator"
        )
    kind, value = chosen[0]
    return kind, value if isinstance(value, str) else None


def _ids(values: list[str]) -> list[int]:
    ids = []
    for v in values:
        if not v.isdigit() or not 0 < int(v) < 2**63:
            raise UsageError(f"id: a notification id is a positive whole number, not {v!r}")
        ids.append(int(v))
    return ids


def positive_int(value: str) -> int:
    """argparse type: refuses 0, negatives and words with the rule in the message."""
    if not value.isdigit() or int(value) == 0:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0, not {value!r}")
    return int(value)


async def cmd_inbox(args, settings: Settings) -> None:
    from db import queries as q

    kind, code = _recipient(args)
    who = f"{kind} {code}" if code else kind
    # The office's notifications are shared; each coordinator (operator) reads them alone.
    reader = f"{kind}:{code}" if code else (await _signed_in(settings, kind)).ref
    pool = await _pool(settings)
    try:
        async with pool.acquire() as conn:
            if args.action in ("read", "unread"):
                if not args.ids:
                    raise UsageError(f"inbox {args.action}: name the notification ids")
                ids = _ids(args.ids)
                read = args.action == "read"
                marked = await q.mark_read(conn, kind, code, reader, ids, read=read)
                missing = sorted(set(ids) - set(marked))
                if marked:
                    print(f"marked {args.action}: {', '.join(map(str, marked))}")
                if missing:
                    raise UsageError(
                        f"id: no notification {', '.join(map(str, missing))} for {who}"
                    )
                return
            rows = await q.inbox(
                conn, kind, code, reader, unread_only=args.unread, limit=args.limit
            )
    finally:
        await pool.close()
    if args.json:
        _print_json([dict(r) for r in rows])
        return
    from activities.render import render

    if not rows:
        print(f"no {'unread ' if args.unread else ''}notifications for {who}")
    union = settings.load_policy().union
    for r in rows:
        context = {**r["payload"], "recipient_kind": kind}
        context.setdefault("title", "")
        subject = render(r["event"], r["language"], context, union=union).subject
        mark = " " if r["read_at"] else "*"
        print(f"{mark} {r['id']:>6}  {_when(r['created_at'])}  {subject}")


async def cmd_notifications(args, settings: Settings) -> None:
    from db import queries as q
    from starter import notifications as n

    ids = _ids(args.ids)
    if args.action == "show" and len(ids) != 1:
        raise UsageError("id: show names exactly one notification id")
    if args.action == "list" and ids:
        raise UsageError("id: list takes no ids (use show ID)")
    pool = await _pool(settings)
    try:
        if args.action == "retry":
            # --pending picks up rows nothing is delivering: written while delivery was off,
            # or before it existed. A row already being delivered is left to its run.
            for status, wanted in (("failed", args.failed), ("pending", args.pending)):
                if wanted:
                    async with pool.acquire() as conn:
                        ids += await q.notification_ids(conn, status)
            if not ids and not (args.failed or args.pending):
                raise UsageError("retry: name the notification ids, or give --failed / --pending")
            if not ids:
                print("nothing to deliver")
                return
            try:
                started = await n.retry(
                    pool,
                    await _client(),
                    sorted(set(ids)),
                    settings,
                    task_queue=settings.task_queue,
                )
            except n.NotificationError as err:
                raise UsageError(str(err)) from err
            skipped = sorted(set(ids) - set(started))
            if started:
                print(f"delivering again: {', '.join(map(str, started))}")
            if skipped:
                print(f"already delivered or withdrawn: {', '.join(map(str, skipped))}")
            return
        if args.action == "show":
            async with pool.acquire() as conn:
                row = await q.outbox_row(conn, ids[0])
                attempts = await q.delivery_attempts(conn, ids[0])
                listed = await q.notifications(conn, outbox_id=ids[0])
            if row is None:
                raise UsageError(f"id: no notification {ids[0]}")
            channels = listed[0]["channels"]
            if args.json:
                _print_json({**dict(row), "channels": channels, "attempts": attempts})
                return
            print(
                f"{row['id']}  {row['event']}  to {row['recipient_kind']} "
                f"{row['recipient_code'] or ''}  [{row['status']}]  request {row['request_id']}"
            )
            for c in channels:
                error = f"  ({c['error']})" if c["error"] else ""
                print(f"  {c['channel']:<8} {c['status']:<10} {c['attempts']} attempt(s){error}")
            for a in attempts:
                code = f" {a['status_code']}" if a["status_code"] else ""
                error = f"  {a['error']}" if a["error"] else ""
                print(
                    f"    {_when(a['at'])}  {a['channel']:<8} #{a['attempt']} {a['outcome']}"
                    f"{code}{error}"
                )
            return
        status = "failed" if args.failed else "pending" if args.pending else None
        async with pool.acquire() as conn:
            rows = await q.notifications(
                conn, status=status, request_id=args.request, limit=args.limit
            )
    finally:
        await pool.close()
    if args.json:
        _print_json([dict(r) for r in rows])
        return
    if not rows:
        print(f"no {status + ' ' if status else ''}notifications")
    for r in rows:
        channels = " ".join(f"{c['channel']}:{c['status']}" for c in r["channels"])
        errors = "; ".join(
            f"{c['channel']}: {c['error']}"
            for c in r["channels"]
            if c["status"] == "failed" and c["error"]
        )
        print(
            f"{r['id']:>6}  {r['request_id']:<13} {r['event']:<28} "
            f"{r['recipient_kind']:<11} {r['status']:<9} {channels}"
            + (f"\n        {errors}" if errors else "")
        )


async def cmd_webhooks(args, settings: Settings) -> None:
    from db import queries as q
    from starter import notifications as n

    needs_agency = args.action != "list"
    if needs_agency and not args.agency:
        raise UsageError(f"webhooks {args.action}: name the agency code")
    pool = await _pool(settings)
    try:
        if args.action == "set":
            if not args.url:
                raise UsageError("url: webhooks set AGENCY URL")
            try:
                secret = await n.register_webhook(pool, args.agency, args.url, settings)
            except n.NotificationError as err:
                raise UsageError(str(err)) from err
            print(f"{args.agency}: webhooks go to {args.url}")
            print(f"signing secret (give it to the agency): {secret}")
            print("  an endpoint that moves keeps its secret; `webhooks rotate` changes it")
        elif args.action == "rotate":
            try:
                secret, until = await n.rotate_webhook(
                    pool, args.agency, settings, args.overlap, force=args.force
                )
            except n.NotificationError as err:
                raise UsageError(str(err)) from err
            print(f"{args.agency}: new signing secret: {secret}")
            print(f"  the previous secret signs too until {_when(until)}")
        elif args.action in ("enable", "disable"):
            async with pool.acquire() as conn:
                found = await q.set_webhook_enabled(
                    conn, args.agency, args.action == "enable", "disabled by an operator"
                )
            if not found:
                raise UsageError(f"agency: {args.agency} has no webhook endpoint")
            print(f"{args.agency}: webhook endpoint {args.action}d")
        else:
            async with pool.acquire() as conn:
                rows = await q.webhook_endpoints(conn)
            if args.json:
                _print_json([{k: v for k, v in dict(r).items() if "secret" not in k} for r in rows])
                return
            if not rows:
                print("no webhook endpoints")
            for r in rows:
                state = "enabled" if r["enabled"] else f"DISABLED ({r['disabled_reason']})"
                rotating = (
                    f"  rotating until {_when(r['previous_until'])}"
                    if r["previous_secret"] and r["previous_until"] > datetime.now(VN_TZ)
                    else ""
                )
                print(f"{r['agency_code']:<10} {r['url']}  {state}{rotating}")
    finally:
        await pool.close()


async def cmd_tokens(args, settings: Settings) -> None:
    from db import queries as q
    from starter.api.auth import create_token

    pool = await _pool(settings)
    try:
        if args.action == "create":
            if not args.role or not args.subject:
                raise UsageError("tokens create: give --role and --subject")
            try:
                token_id, token = await create_token(pool, args.role, args.subject, args.label)
            except ValueError as err:
                raise UsageError(str(err)) from err
            if args.json:
                _print_json({"id": token_id, "token": token})
                return
            print(f"token {token_id} for {args.role} {args.subject} (shown once, keep it):")
            print(token)
        elif args.action == "revoke":
            ids = _ids(args.ids)
            if len(ids) != 1:
                raise UsageError("id: revoke names exactly one token id")
            async with pool.acquire() as conn:
                if not await q.revoke_token(conn, ids[0]):
                    raise UsageError(f"id: no live token {ids[0]}")
            print(f"token {ids[0]} revoked")
        else:
            async with pool.acquire() as conn:
                rows = await q.tokens(conn)
            if args.json:
                _print_json([dict(r) for r in rows])
                return
            for r in rows:
                state = f"revoked {_when(r['revoked_at'])}" if r["revoked_at"] else "live"
                print(f"{r['id']:>5}  {r['role']:<11} {r['subject']:<20} {state:<24} {r['label']}")
    finally:
        await pool.close()


# The options a report's refusal names, for each field `domain.reports` names.
REPORT_OPTIONS = {"period": "--period", "agencies": "--agency", "fields": "--field"}


async def cmd_report(args, settings: Settings) -> None:
    """A period's report (the measures of `domain.reports`) as CSV, XLSX or the PDF in the
    Union's letterhead. Everything is checked and made before the file is written, so a
    refusal writes nothing."""
    from db import queries as q
    from db import reports as db_reports
    from domain.reports import ReportFilter, ReportInputError, parse_period
    from starter.reports import exports

    def refused(err: ReportInputError) -> UsageError:
        rule = str(err).removeprefix(f"{err.field}: ")
        return UsageError(f"{REPORT_OPTIONS.get(err.field, err.field)}: {rule}")

    try:
        period = parse_period(args.period)
    except ReportInputError as err:
        raise refused(err) from err
    pdf = args.format == "pdf"
    if pdf and args.language != "vi":
        raise UsageError(
            "--language: the PDF is the Union's document, in Vietnamese; "
            "--language en is for csv and xlsx"
        )
    if not pdf and (args.signer or args.to):
        raise UsageError("--signer, --to: they are the PDF's (--format pdf)")
    if args.output == "-" and args.format != "csv":
        raise UsageError("--output: only csv is written to standard output (-); name a file")
    stem = "bao-cao" if args.language == "vi" else "report"
    output = args.output or f"{stem}-{period.label.replace('..', '_')}.{args.format}"
    chosen = ReportFilter(
        agencies=frozenset(args.agency or ()),
        kinds=frozenset(RequestKind(k) for k in args.kind or ()),
        fields=frozenset(args.field or ()),
    )
    policy = settings.load_policy()
    pool = await _pool(settings)
    try:
        try:
            report = await db_reports.report(pool, period, chosen, policy=policy)
        except ReportInputError as err:
            raise refused(err) from err
        async with pool.acquire() as conn:
            agencies, _ = await db_reports.choices(conn)
            experts = await q.expert_names(conn, [e.expert_code for e in report.experts])
            names = exports.Names(agencies=agencies, experts=experts)
        signer = await _report_signer(args, settings, pool) if pdf else None
    finally:
        await pool.close()
    if args.format == "csv":
        data = exports.to_csv(report, args.language)
    elif args.format == "xlsx":
        data = exports.to_xlsx(report, args.language, names=names)
    else:
        assert signer is not None
        data = exports.to_pdf(
            report,
            union=policy.union,
            signer_name=signer.name,
            signer_title=signer.title,
            names=names,
            addressees=args.to or (),
        )
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    path = Path(output)
    part = path.with_name(f".{path.name}.part")
    try:
        part.write_bytes(data)
        part.replace(path)  # whole or not at all: a reader never sees half a file
    except OSError as err:
        part.unlink(missing_ok=True)
        raise UsageError(f"--output: cannot write {output}: {err.strerror}") from err
    if args.json:
        _print_json({"output": str(path.resolve()), "format": args.format, "bytes": len(data)})
    else:
        print(f"wrote {path.resolve()}")


async def _report_signer(args, settings: Settings, pool) -> Actor:
    """Who signs the PDF: --signer, else the coordinator the CLI acts as."""
    if args.signer:
        option, code = "--signer", args.signer
    else:
        role, _, code = settings.resolve_cli_as().partition(":")
        option = "ADVISORY_CLI_AS"
        if role != "coordinator" or not code:
            raise UsageError(
                "--signer: the PDF is signed by a coordinator of the registry; give "
                "--signer CODE, or act as one with ADVISORY_CLI_AS=coordinator:<code>"
            )
    try:
        return await service.signed_in(pool, "coordinator", code)
    except service.ActionError as err:
        raise UsageError(f"{option}: {err}") from err


async def cmd_keys(args, settings: Settings) -> None:
    """Payload keys. `new` prints a key setting. `rotate` puts a new key first (it encrypts from
    now on; every older key still decrypts): in the key file when there is one (the dev stack's,
    or --file), else it prints the rotated ADVISORY_PAYLOAD_KEYS to set on every process."""
    from infra.codec import KeyError_, key_file, new_key_setting, rotated, write_key_file

    if args.id is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,20}", args.id):
        raise UsageError("id: letters, digits, - and _ only, at most 20")
    try:
        if args.action == "new":
            print(new_key_setting(args.id))
            return
        path = Path(args.file) if args.file else key_file(settings.data_dir)
        if path.exists():
            setting = rotated(path.read_text(encoding="utf-8").strip(), args.id)
            write_key_file(path, setting)
            new_id = setting.partition(":")[0]
            print(
                f"{path}: key {new_id} encrypts from now on; the older keys still decrypt. "
                "Restart every process that reads it (make up: stop and start it again)."
            )
        elif settings.payload_keys:
            print(rotated(settings.payload_keys.get_secret_value(), args.id))
        else:
            raise UsageError(
                f"keys rotate: no key file at {path} and ADVISORY_PAYLOAD_KEYS is not set"
            )
    except KeyError_ as err:
        raise UsageError(str(err)) from err


async def cmd_api(args, settings: Settings) -> None:
    import uvicorn

    from infra.settings import TemporalSettingError, temporal_connection
    from starter.api import create_app

    try:  # refused by name here rather than as a traceback from the app's start-up
        temporal_connection()
    except TemporalSettingError as err:
        raise UsageError(str(err)) from err

    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=args.host, port=args.port, log_config=None)
    )
    await server.serve()


async def cmd_migrate(args, settings: Settings) -> None:
    from db import reports
    from db.migrate import migrate

    # Its advisory lock spans transactions: a session, never a pooler in transaction mode.
    pool = await _pool(settings, settings.resolve_session_database_url())
    async with pool.acquire() as conn:
        applied = await migrate(conn)
        reported = await reports.rebuild(conn, settings.load_policy())
    await pool.close()
    print(f"applied: {', '.join(applied)}" if applied else "schema up to date")
    if reported:
        print(f"report tables: {reported} requests recorded before them now counted")


async def cmd_demo(args, settings: Settings) -> None:
    from starter.demo import park_requests, run_demo

    if args.history is not None:
        await _demo_history(args, settings)
        return
    if args.seed is not None:
        raise UsageError("--seed: only with --history (it chooses which past is generated)")
    client = await _client()
    pool = await _pool(settings)
    try:
        await run_demo(client, pool, settings, out=print)
        print("\nRequests left for the operators' board (find them in the UI by ReviewStage,")
        print("AgencyCode, OpinionsReceived; or `advisory list --stage …`):")
        await park_requests(client, pool, settings, out=print)
    finally:
        await pool.close()


async def _demo_history(args, settings: Settings) -> None:
    """The past of the span, recorded as the engine records (PostgreSQL only: no workflow
    runs for a request that has ended)."""
    from starter.history import generate_history, print_summary

    pool = await _pool(settings, max_size=5)
    try:
        run = await generate_history(
            pool, settings, span=args.history, seed_number=1 if args.seed is None else args.seed
        )
    finally:
        await pool.close()
    print_summary(run, settings)


def history_span(value: str) -> str:
    """argparse type of --history: refused with the rule, before anything is opened."""
    from starter.history_plan import parse_span

    try:
        parse_span(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return value


def history_seed(value: str) -> int:
    if not value.isdigit() or int(value) > 999_999:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 999999, not {value!r}")
    return int(value)


async def cmd_worker(args, settings: Settings) -> None:
    import worker

    await worker.main()


# --- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="advisory",
        description="Advisory & review engine: requests, councils, opinions, conclusions.",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, fn: Callable[..., Awaitable[None]], help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        c.set_defaults(fn=fn)
        return c

    c = cmd("submit", cmd_submit, "submit a request from a JSON file (agency)")
    c.add_argument("file")
    c.add_argument(
        "--attach", action="append", metavar="PATH", help="a file to upload with it (repeatable)"
    )
    for action in actions.ACTIONS.values():
        c = cmd(action.name, cmd_action, f"{action.summary.lower()} ({action.role})")
        c.add_argument("request")
        if action.role == "expert":
            c.add_argument("expert", help="your expert code")
        for option in action.options:
            positional = not option.flag.startswith("-")
            c.add_argument(
                *(() if positional else (option.flag,)),
                **({} if option.choices else {"metavar": option.flag.lstrip("-").upper()}),
                dest=_dest(option),
                help=option.help or None,
                choices=option.choices,
                type=option.type,
                **({} if positional else {"required": option.required}),
            )
        if action.given is not None:
            c.add_argument("--file", help="JSON: what to give, as the API's body")
        if action.takes_documents:
            c.add_argument(
                "--attach", action="append", metavar="PATH", help="a file to upload (repeatable)"
            )
    c = cmd(
        "list",
        cmd_list,
        "list requests (from PostgreSQL), or workflows matching a Temporal query (--query)",
    )
    c.add_argument("--stage")
    c.add_argument("--agency")
    c.add_argument("--kind", choices=["advisory", "critique", "social_assessment"])
    c.add_argument(
        "--overdue", action="store_true", help="only requests with a deadline past grace"
    )
    c.add_argument("--stuck", action="store_true", help="only requests past their stage's deadline")
    c.add_argument(
        "--query",
        help="a Temporal list filter, as in the UI: e.g. \"ReviewStage = 'review' AND "
        "AgencyCode = 'STNMT'\"",
    )
    c.add_argument("--limit", type=positive_int, default=50)
    c = cmd("show", cmd_show, "show a request: its state and audit trail")
    c.add_argument("request")
    c = cmd("tasks", cmd_tasks, "an expert's open tasks")
    c.add_argument("expert")
    for name, one in (
        ("experts", "expert"),
        ("agencies", "agency"),
        ("coordinators", "coordinator"),
        ("operators", "operator"),
    ):
        c = cmd(name, cmd_registry, f"the {one} registry: import, list, show, deactivate")
        c.add_argument("action", choices=["import", "list", "show", "deactivate", "seed"])
        c.add_argument("target", nargs="?", help=f"a .csv/.json file to import, or {one}'s code")
    c = cmd("council", cmd_council, "a request's proposed council, with the reasons")
    c.add_argument("action", choices=["show"])
    c.add_argument("request")
    c = cmd("inbox", cmd_inbox, "a recipient's notifications; mark them read or unread")
    c.add_argument("action", nargs="?", choices=["list", "read", "unread"], default="list")
    c.add_argument("ids", nargs="*", help="read/unread: notification ids")
    c.add_argument("--agency", help="the agency's code")
    c.add_argument("--expert", help="the expert's code")
    c.add_argument("--coordinator", action="store_true")
    c.add_argument("--operator", action="store_true")
    c.add_argument("--unread", action="store_true", help="only unread")
    c.add_argument("--limit", type=positive_int, default=50)
    c = cmd(
        "notifications",
        cmd_notifications,
        "delivery of notifications: list (--failed, --pending), show one, retry",
    )
    c.add_argument("action", nargs="?", choices=["list", "show", "retry"], default="list")
    c.add_argument("ids", nargs="*", help="show/retry: notification ids")
    c.add_argument("--failed", action="store_true", help="only failed (retry: all failed)")
    c.add_argument(
        "--pending", action="store_true", help="only not yet delivered (retry: all pending)"
    )
    c.add_argument("--request", help="only this request's")
    c.add_argument("--limit", type=positive_int, default=100)
    c = cmd("webhooks", cmd_webhooks, "agencies' webhook endpoints: set, rotate, list, enable")
    c.add_argument("action", choices=["set", "rotate", "list", "enable", "disable"])
    c.add_argument("agency", nargs="?")
    c.add_argument("url", nargs="?")
    c.add_argument("--overlap", type=float, help="rotate: hours the previous secret keeps signing")
    c.add_argument(
        "--force",
        action="store_true",
        help="rotate: even during an overlap (the oldest secret stops signing at once)",
    )
    c = cmd("tokens", cmd_tokens, "API bearer tokens: create (shown once), list, revoke")
    c.add_argument("action", choices=["create", "list", "revoke"])
    c.add_argument("ids", nargs="*", help="revoke: the token id")
    c.add_argument("--role", choices=["agency", "expert", "coordinator", "operator"])
    c.add_argument("--subject", help="the agency code, expert code, or the person's name")
    c.add_argument("--label", default="", help="what the token is for")
    c = cmd(
        "report",
        cmd_report,
        "a period's report on coordination: CSV, XLSX, or the PDF in the Union's letterhead",
    )
    c.add_argument(
        "--period", required=True, help="2026, 2026-Q3, 2026-07 or 2026-01-01..2026-06-30"
    )
    c.add_argument(
        "--agency", action="extend", nargs="+", metavar="CODE", help="only these agencies' requests"
    )
    c.add_argument(
        "--kind",
        action="extend",
        nargs="+",
        choices=[k.value for k in RequestKind],
        help="only requests of these kinds",
    )
    c.add_argument(
        "--field", action="extend", nargs="+", help="only requests in these fields of expertise"
    )
    c.add_argument("--format", required=True, choices=["csv", "xlsx", "pdf"])
    c.add_argument(
        "--output",
        metavar="FILE",
        help="where to write (default here: bao-cao-<period>.<format>, report-… in English); "
        "- writes csv to standard output",
    )
    c.add_argument(
        "--language", choices=["vi", "en"], default="vi", help="csv, xlsx: the words' language"
    )
    c.add_argument(
        "--signer",
        metavar="CODE",
        help="pdf: the coordinator who signs it (default: the one ADVISORY_CLI_AS names)",
    )
    c.add_argument(
        "--to", action="append", metavar="NAME", help="pdf: an addressee (Kính gửi), repeatable"
    )
    c = cmd("keys", cmd_keys, "payload encryption keys: new (print one), rotate")
    c.add_argument("action", choices=["new", "rotate"])
    c.add_argument("--id", help="the new key's id (default: a random one)")
    c.add_argument("--file", help="rotate: the key file (default: the dev stack's)")
    c = cmd("api", cmd_api, "serve the HTTP API (OpenAPI at /docs)")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=positive_int, default=8000)
    cmd("migrate", cmd_migrate, "apply database migrations")
    c = cmd("demo", cmd_demo, "play a whole lifecycle against the running stack")
    c.add_argument(
        "--history",
        type=history_span,
        metavar="SPAN",
        help="instead: record the past of this span (2y, 18m) for the reports, "
        "as the engine would have recorded it",
    )
    c.add_argument(
        "--seed",
        type=history_seed,
        help="with --history: which past (the same seed, the same requests; default 1)",
    )
    cmd("worker", cmd_worker, "run a worker")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    try:
        asyncio.run(args.fn(args, settings))
    except (UsageError, StoreSettingError) as err:
        print(f"advisory: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except service.ActionError as err:
        print(f"advisory: refused: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RuntimeError as err:
        print(f"advisory: {err}", file=sys.stderr)
        return EXIT_FAILED
    except RPCError as err:  # Temporal unavailable, a deadline exceeded: try again later
        print(f"advisory: Temporal: {err.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the reader went away: not an error of ours.
        sys.stderr.close()
        return 0
    return 0


def entry() -> None:
    """The console script. Leaves with os._exit once output is flushed: the Temporal client's
    native threads can abort an ordinary interpreter shutdown (SIGABRT in
    PyGILState_Release while finalizing), which would turn a finished command into a crash."""
    import os

    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass
    os._exit(code)


if __name__ == "__main__":
    entry()
