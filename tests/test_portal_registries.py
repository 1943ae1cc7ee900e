"""The registries in the portal, through the real app over HTTP and a real PostgreSQL: the
office lists and searches experts and agencies, imports a file and reads its report line by
line in Vietnamese, deactivates an entry (who then cannot sign in) and makes it active again;
agencies and experts get no such page; a form without its CSRF token changes nothing."""

from __future__ import annotations

import re
import uuid

from db import queries as q
from domain.models import Coordinator, Operator
from tests.test_portal_auth import (
    csrf_of,
    new_expert,
    portal,
    portal_settings,
    signed_in_as,
    text_of,
)

HEADER = (
    "code,name,email,organisation,member_association,expertise,languages,load_limit,active,"
    "conflicts,unavailable\n"
)


async def office_person(pool, role: str = "coordinator"):
    tag = uuid.uuid4().hex[:8]
    async with pool.acquire() as conn:
        if role == "operator":
            person = Operator(code=f"O{tag}", name=f"Vận hành {tag}", email=f"op.{tag}@lhh.vn")
            await q.upsert_operator(conn, person)
        else:
            person = Coordinator(
                code=f"C{tag}", name=f"Cán bộ {tag}", title="Chuyên viên", email=f"c.{tag}@lhh.vn"
            )
            await q.upsert_coordinator(conn, person)
    return person


async def upload(http, path: str, name: str, content: bytes):
    form = await http.get(path)
    return await http.post(
        path,
        data={"csrf_token": csrf_of(form.text)},
        files={"file": (name, content, "text/csv")},
    )


async def test_the_office_searches_imports_and_reads_the_report_line_by_line(env, pool, mail):
    coordinator = await office_person(pool)
    tag = uuid.uuid4().hex[:6].upper()
    csv = (
        HEADER + f"R{tag}1,Đỗ Minh Tâm,tam.{tag}@vien.vn,Viện Thủy lợi {tag},Hội Thủy lợi,"
        '"thuy-loi:5; moi-truong:3","vi",3,yes,,\n'
        + f"R{tag}2,Lý Thu Hà,not-an-address,Viện {tag},Hội Tin học,tin-hoc:4,vi,3,yes,,\n"
        + f"R{tag}3,,ha.{tag}@vien.vn,Viện {tag},Hội Tin học,tin-hoc:4,vi,3,yes,,\n"
        + f"R{tag}1,Trùng Mã,trung.{tag}@vien.vn,Viện {tag},Hội Tin học,tin-hoc:4,vi,3,yes,,\n"
    ).encode()
    async with portal(env, pool, portal_settings(mail)) as http:
        await signed_in_as(http, mail, coordinator.email)
        home = await http.get("/portal/")
        assert 'href="/portal/registry/experts"' in home.text
        assert 'href="/portal/registry/agencies"' in home.text

        report = await upload(http, "/portal/registry/experts/import", "chuyen-gia.csv", csv)
        assert report.status_code == 200, report.text
        seen = text_of(report.text)
        assert "Thêm mới 1" in seen and "Bị từ chối 3" in seen
        assert "dòng 3 email Vui lòng nhập địa chỉ thư điện tử" in seen
        assert "dòng 4 name Vui lòng nhập thông tin này." in seen
        assert "dòng 5 code Mã này đã có ở dòng 2." in seen

        # The same file again changes nothing.
        again = text_of((await upload(http, "/portal/registry/experts/import", "x.csv", csv)).text)
        assert "Thêm mới 0" in again and "Không đổi 1" in again

        found = await http.get("/portal/registry/experts", params={"q": f"thủy lợi {tag}"})
        assert f"R{tag}1" in found.text and "Đỗ Minh Tâm" in text_of(found.text)
        by_field = await http.get("/portal/registry/experts", params={"q": f"r{tag}"})
        assert f"R{tag}1" in by_field.text and f"R{tag}2" not in by_field.text
        nothing = await http.get("/portal/registry/experts", params={"q": "không-ai-cả-" + tag})
        assert "Không có mục nào phù hợp." in text_of(nothing.text)

        shown = text_of((await http.get(f"/portal/registry/experts/R{tag}1")).text)
        assert "thuy-loi (mức 5)" in shown and "0 đang làm, tối đa 3 cùng lúc" in shown

        # A file that is not a registry: the reason beside the field, nothing applied.
        refused = await upload(http, "/portal/registry/experts/import", "x.csv", b"ten,email\n")
        assert refused.status_code == 422
        assert "Dòng đầu của tệp CSV phải ghi tên các cột" in text_of(refused.text)
        wrong = await upload(http, "/portal/registry/agencies/import", "x.xlsx", b"PK")
        assert wrong.status_code == 422 and "Vui lòng chọn tệp .csv hoặc .json." in text_of(
            wrong.text
        )


async def test_a_deactivated_expert_is_shown_so_and_cannot_sign_in(env, pool, mail):
    operator = await office_person(pool, "operator")
    expert = await new_expert(pool)
    async with portal(env, pool, portal_settings(mail)) as office:
        await signed_in_as(office, mail, operator.email)
        page = await office.get(f"/portal/registry/experts/{expert.code}")
        assert "Đang hoạt động." in text_of(page.text)

        # Without the form's token: refused, the expert still active.
        forged = await office.post(
            f"/portal/registry/experts/{expert.code}/active", data={"active": "no"}
        )
        assert forged.status_code == 403
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT active FROM experts WHERE code=$1", expert.code)

        async with portal(env, pool, portal_settings(mail)) as http:
            await signed_in_as(http, mail, expert.email)
            assert (await http.get("/portal/")).status_code == 200
            # An expert has no registry pages.
            assert (await http.get("/portal/registry/experts")).status_code == 403

            done = await office.post(
                f"/portal/registry/experts/{expert.code}/active",
                data={"active": "no", "csrf_token": csrf_of(page.text)},
            )
            assert done.status_code == 303
            assert "Ngừng hoạt động" in text_of((await office.get(done.headers["location"])).text)
            assert (await http.get("/portal/")).status_code == 303  # signed out

        listed = await office.get("/portal/registry/experts", params={"q": expert.code})
        assert f'href="/portal/registry/experts/{expert.code}"' not in listed.text
        with_inactive = await office.get(
            "/portal/registry/experts", params={"q": expert.code, "inactive": "yes"}
        )
        assert re.search(rf"{expert.code}.*ngừng hoạt động", text_of(with_inactive.text))

        page = await office.get(f"/portal/registry/experts/{expert.code}")
        back = await office.post(
            f"/portal/registry/experts/{expert.code}/active",
            data={"active": "yes", "csrf_token": csrf_of(page.text)},
        )
        assert back.status_code == 303
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT active FROM experts WHERE code=$1", expert.code)
        assert (await office.get("/portal/registry/experts/NOSUCHCODE")).status_code == 404
        assert (await office.get("/portal/registry/coordinators")).status_code == 404
