"""Who acts is who signed in, and agencies are who the registry says: actors from tokens and
the CLI's identity, the signature under a conclusion, per-person read marks, the agency and
coordinator registries, and conflict rules that ignore how a submission spells its agency."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from db import queries as q
from domain.matching import Candidate, MatchRequest, propose_councils
from domain.models import RegisteredAgency
from tests import factories as f
from tests.conftest import advisory, register_agency
from tests.test_api import api, body, token, until_stage

# --- the agency registry ----------------------------------------------------------------------


def test_agencies_import_line_by_line_list_show_deactivate(database_url, pool, tmp_path):
    tag = uuid.uuid4().hex[:5].upper()

    def cli(*args: str):
        return advisory(*args, env_vars={"DATABASE_URL": database_url})

    path = tmp_path / "agencies.csv"
    path.write_text(
        "code,name,aliases,language,contacts,active\n"
        f"XD{tag},Sở Xây dựng tỉnh Bắc Giang,Sở Xây dựng Bắc Giang; SXD Bắc Giang,vi,"
        "Lê Văn Tâm <tam.lv@sxd.example.gov.vn>,true\n"
        f"YT{tag},,Sở Y tế,vi,,true\n"
        f"TP{tag},Sở Tư pháp,,fr,,true\n"
        f"NV{tag},Sở Nội vụ,,vi,Không có thư <not-an-address>,true\n"
        f"XD{tag},Sở Xây dựng (lần hai),,vi,,true\n",
        encoding="utf-8",
    )
    first = cli("agencies", "import", str(path))
    assert first.returncode == 2
    assert "1 added, 0 changed, 0 unchanged; 4 rejected" in first.stdout
    assert "line 3: name: String should have at least 1 character" in first.stdout
    assert "line 4: language: Input should be 'vi' or 'en'" in first.stdout
    assert "line 5: contacts.0.email: value is not a valid email address" in first.stdout
    assert f"line 6: code: XD{tag} already given on line 2" in first.stdout
    again = cli("agencies", "import", str(path))
    assert "0 added, 0 changed, 1 unchanged" in again.stdout

    shown = cli("agencies", "show", f"XD{tag}")
    assert shown.returncode == 0, shown.stderr
    assert "Sở Xây dựng tỉnh Bắc Giang" in shown.stdout
    assert "also known as: SXD Bắc Giang" in shown.stdout
    assert "contact: Lê Văn Tâm <tam.lv@sxd.example.gov.vn>" in shown.stdout
    listed = cli("--json", "agencies", "list")
    row = next(a for a in json.loads(listed.stdout) if a["code"] == f"XD{tag}")
    assert row["aliases"] == ["Sở Xây dựng Bắc Giang", "SXD Bắc Giang"] and row["active"]

    assert cli("agencies", "deactivate", f"XD{tag}").stdout.strip() == f"XD{tag} deactivated"
    assert "was already inactive" in cli("agencies", "deactivate", f"XD{tag}").stdout
    missing = cli("agencies", "show", f"ZZ{tag}")
    assert missing.returncode == 2 and f"no agency ZZ{tag}" in missing.stderr


def test_coordinators_import_and_a_token_needs_one_registered(database_url, pool, tmp_path):
    tag = uuid.uuid4().hex[:5].upper()

    def cli(*args: str):
        return advisory(*args, env_vars={"DATABASE_URL": database_url})

    path = tmp_path / "coordinators.json"
    path.write_text(
        json.dumps(
            [
                {
                    "code": f"C{tag}",
                    "name": "Trịnh Thu Hà",
                    "title": "Chuyên viên Văn phòng",
                    "email": "ha.tt@lienhiephoi.example.vn",
                },
                {"code": f"D{tag}", "name": "Thiếu chức danh", "email": "x@example.vn"},
            ],
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    imported = cli("coordinators", "import", str(path))
    assert "1 added" in imported.stdout and "entry 2: title: Field required" in imported.stdout
    made = cli("tokens", "create", "--role", "coordinator", "--subject", f"C{tag}")
    assert made.returncode == 0, made.stderr
    refused = cli("tokens", "create", "--role", "coordinator", "--subject", f"D{tag}")
    assert refused.returncode == 2 and f"no coordinator D{tag}" in refused.stderr
    agency = cli("tokens", "create", "--role", "agency", "--subject", f"NONE{tag}")
    assert agency.returncode == 2 and f"no agency NONE{tag} in the agency registry" in agency.stderr


# --- submissions take their agency from the registry ------------------------------------------


async def test_a_submission_never_changes_the_registry_and_an_inactive_agency_is_refused(
    env, worker, pool, settings, registry
):
    await registry.add(3)
    code = f"A{uuid.uuid4().hex[:6].upper()}"
    official = await register_agency(pool, code, "Sở Xây dựng tỉnh Bắc Giang")
    agency = await token(pool, "agency", code)
    typed = f.submission(registry.field, agency={"code": code, "name": "Sở XD Bắc Giang"})
    async with api(env, pool, settings, worker) as http:
        r = await http.post("/requests", json=body(typed), headers=agency)
        assert r.status_code == 201, r.text
        rid = r.json()["request_id"]
        await until_stage(http, rid, agency, "screening")
        async with pool.acquire() as conn:
            assert (await q.get_agency(conn, code))["name"] == official.name
            await q.set_active(conn, "agencies", code, False)
            before = await conn.fetchval("SELECT count(*) FROM requests")

        # A deactivated agency signs in no more: its submission is refused, naming the rule.
        again = f.submission(registry.field, agency={"code": code})
        r = await http.post("/requests", json=body(again), headers=agency)
        assert r.status_code == 403, r.text
        assert r.json()["detail"] == f"agency {code} is inactive in the agency registry"
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM requests") == before


async def test_conflict_rules_compare_the_registry_not_the_typed_name(
    env, worker, pool, settings, registry
):
    """The finding that opened this: an agency that typed its name differently had an expert
    from its own department made chair. Experts listed under the official name or an alias
    are left out, however the submission spells the agency."""
    code = f"A{uuid.uuid4().hex[:6].upper()}"
    await register_agency(
        pool, code, "Sở Xây dựng tỉnh Bắc Giang", aliases=["SXD Bắc Giang", "Viện QH Bắc Giang"]
    )
    own = [
        *(await registry.add(1, organisation="Sở  xây dựng tỉnh Bắc Giang")),
        *(await registry.add(1, organisation="sxd bắc giang")),
        *(await registry.add(1, organisation="Viện QH Bắc Giang")),
    ]
    await registry.add(4)
    agency = await token(pool, "agency", code)
    coordinator = await token(pool, "coordinator", "VP01")
    typed = f.submission(registry.field, agency={"code": code, "name": "Sở Xây dựng Bắc Giang"})
    async with api(env, pool, settings, worker) as http:
        rid = (await http.post("/requests", json=body(typed), headers=agency)).json()["request_id"]
        await until_stage(http, rid, agency, "screening")
        r = await http.post(
            f"/requests/{rid}/screening", json={"decision": "accept"}, headers=coordinator
        )
        assert r.status_code == 200, r.text
        seen = await until_stage(
            http, rid, coordinator, "review", ready=lambda s: len(s["assignments"]) == 3
        )
    seated = {a["expert_code"] for a in seen["assignments"]}
    assert seated.isdisjoint(e.code for e in own)
    async with pool.acquire() as conn:
        proposal = (await q.get_council(conn, rid))["proposal"]
    explained = " ".join(proposal["excluded"])
    for e in own:
        assert f"{e.code}: same organisation as the requester" in explained


AGENCY = RegisteredAgency(
    code="SXD",
    name="Sở Xây dựng tỉnh Bắc Giang",
    aliases=["SXD Bắc Giang", "Viện Quy hoạch Xây dựng Bắc Giang"],
)


def _spelled(name: str, data) -> str:
    """The same name as a person might type it: any case, any runs of spaces."""
    words = name.split()
    cased = [w.upper() if data.draw(st.booleans()) else w.lower() for w in words]
    gaps = [" " * data.draw(st.integers(1, 3)) for _ in words]
    return "".join(g + w for g, w in zip(gaps, cased, strict=True)) + data.draw(
        st.sampled_from(["", " "])
    )


@settings(max_examples=60, deadline=None)
@given(typed=st.text(min_size=1, max_size=60).filter(str.strip), data=st.data())
def test_property_no_expert_of_the_agency_is_ever_proposed(typed, data):
    """For any name a submission types, and any spelling of the agency's names in the expert
    registry, no expert whose organisation is the agency (or one of its aliases) is proposed:
    the matcher is given the registry's identities (the typed name reaches it nowhere; the API
    test above shows the path from a typed name to the proposal)."""
    own_names = [AGENCY.name, *AGENCY.aliases]
    candidates = [
        Candidate(
            code=f"OWN-{i}",
            organisation=_spelled(data.draw(st.sampled_from(own_names)), data),
            member_association=f"Hội {i}",
            expertise={"xay-dung": 5},
            load=0,
            load_limit=3,
        )
        for i in range(3)
    ] + [
        Candidate(
            code=f"OUT-{i}",
            organisation=f"Trường Đại học {i}",
            member_association=f"Hội {i}",
            expertise={"xay-dung": 1},
            load=0,
            load_limit=3,
        )
        for i in range(4)
    ]
    submission = f.submission("xay-dung", agency={"code": AGENCY.code, "name": typed})
    request = MatchRequest(
        request_id=submission.request_id(),
        requester=AGENCY.identities(),
        fields=("xay-dung",),
        council_size=3,
        alternates=2,
        window=(date(2026, 12, 1), date(2026, 12, 15)),
    )
    proposal = propose_councils([request], candidates)[request.request_id]
    proposed = {m.expert_code for m in [*proposal.members, *proposal.alternates]}
    assert not any(code.startswith("OWN") for code in proposed)
    assert len(proposal.members) == 3


# --- actors are the signed-in ------------------------------------------------------------------


async def test_actions_record_the_signed_in_coordinator_and_no_body_names_another(
    env, worker, pool, settings, registry
):
    await registry.add(3)
    code = f"A{uuid.uuid4().hex[:6].upper()}"
    agency = await token(pool, "agency", code)
    screener = await token(pool, "coordinator", "VP02")
    reader = await token(pool, "coordinator", "VP01")
    sub = f.submission(registry.field, agency={"code": code})
    async with api(env, pool, settings, worker) as http:
        rid = (await http.post("/requests", json=body(sub), headers=agency)).json()["request_id"]
        await until_stage(http, rid, agency, "screening")

        # A body naming who acts is refused, and nothing changes.
        forged = {"decision": "accept", "actor": {"role": "coordinator", "code": "PCT01"}}
        r = await http.post(f"/requests/{rid}/screening", json=forged, headers=screener)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "actor", r.text
        old = {"decision": "accept", "screened_by": "Chủ tịch"}
        r = await http.post(f"/requests/{rid}/screening", json=old, headers=screener)
        assert r.status_code == 422 and "screened_by" in r.text, r.text
        assert (await http.get(f"/requests/{rid}", headers=reader)).json()["stage"] == "screening"

        # The office's notification of the new request: each coordinator reads it alone.
        office = (await http.get("/me/inbox", headers=reader)).json()
        told = next(n for n in office if n["request_id"] == rid)
        r = await http.post(f"/me/inbox/{told['id']}/read", headers=reader)
        assert r.status_code == 200
        unread = (await http.get("/me/inbox?unread=true", headers=reader)).json()
        assert told["id"] not in [n["id"] for n in unread]
        others = (await http.get("/me/inbox?unread=true", headers=screener)).json()
        assert told["id"] in [n["id"] for n in others]

        r = await http.post(
            f"/requests/{rid}/screening", json={"decision": "accept"}, headers=screener
        )
        assert r.status_code == 200, r.text
        trail = (await http.get(f"/requests/{rid}/timeline", headers=reader)).json()
        accepted = next(e for e in trail if e["action"] == "screening_accepted")
        assert accepted["actor"] == "coordinator:VP02"
        assert accepted["actor_name"] == "Hoàng Minh Đức, Phó Chánh Văn phòng"

        # A coordinator who leaves the office signs in no more.
        async with pool.acquire() as conn:
            await q.set_active(conn, "coordinators", "VP02", False)
        try:
            r = await http.get(f"/requests/{rid}", headers=screener)
            assert r.status_code == 403
            assert r.json()["detail"] == "coordinator VP02 is inactive in the coordinator registry"
        finally:
            async with pool.acquire() as conn:
                await q.set_active(conn, "coordinators", "VP02", True)


async def test_the_cli_acts_as_its_configured_coordinator(database_url, pool, tmp_path):
    """Coordinators' commands need ADVISORY_CLI_AS (or the dev stack's file) naming a
    registered coordinator; the refusal names the setting and the rule."""
    env = {"DATABASE_URL": database_url, "ADVISORY_CLI_AS": "", "ADVISORY_DATA_DIR": str(tmp_path)}
    unset = await asyncio.to_thread(advisory, "approve", "R-0000000000", env_vars=env)
    assert unset.returncode == 2
    assert "ADVISORY_CLI_AS: a coordinator's action from the CLI needs" in unset.stderr
    stranger = {**env, "ADVISORY_CLI_AS": "coordinator:NOBODY"}
    refused = await asyncio.to_thread(advisory, "approve", "R-0000000000", env_vars=stranger)
    assert refused.returncode == 2
    assert "ADVISORY_CLI_AS: no coordinator NOBODY in the coordinator registry" in refused.stderr
