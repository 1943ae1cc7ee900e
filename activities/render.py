"""Turns an outbox row into a message in the recipient's language: subject, plain text and the
same text as HTML, from the templates in `activities/templates/<language>.toml`, signed with the
Union's identity from the policy file."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup, escape

from domain.notifications import LANGUAGES
from domain.policy import UnionIdentity

TEMPLATES = Path(__file__).resolve().parent / "templates"
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")

LABELS: dict[str, dict[str, str]] = {
    "vi": {
        "endorse": "đồng thuận",
        "endorse_with_changes": "đồng thuận có điều chỉnh",
        "do_not_endorse": "không đồng thuận",
        "adopted": "tiếp thu",
        "partially_adopted": "tiếp thu một phần",
        "not_adopted": "không tiếp thu",
        "chair": "chủ trì",
        "member": "thành viên",
        "before": "sắp đến hạn",
        "overdue": "quá hạn",
        "screening": "sơ loại hồ sơ",
        "supplement": "bổ sung hồ sơ",
        "respond": "trả lời lời mời",
        "review": "góp ý, phản biện",
        "synthesis": "tổng hợp kết luận",
        "approval": "phê duyệt kết luận",
        "adoption": "trả lời về việc tiếp thu",
        "email": "thư điện tử",
        "webhook": "webhook",
        "links": "Làm ngay trên cổng thông tin (mỗi liên kết dùng một lần):",
        "link_accept": "Nhận lời",
        "link_decline": "Từ chối",
        "link_opinion": "Gửi ý kiến",
        "link_conclusion": "Dự thảo kết luận",
        "link_supplement": "Bổ sung hồ sơ",
        "link_adoption": "Trả lời tiếp thu",
        "link_request": "Xem hồ sơ",
        "links_office": "Trên cổng thông tin (đăng nhập bằng địa chỉ thư của anh/chị):",
        "link_case": "Mở hồ sơ",
    },
    "en": {
        "endorse": "endorse",
        "endorse_with_changes": "endorse with changes",
        "do_not_endorse": "do not endorse",
        "adopted": "adopted",
        "partially_adopted": "partially adopted",
        "not_adopted": "not adopted",
        "chair": "chair",
        "member": "member",
        "before": "due soon",
        "overdue": "overdue",
        "screening": "screening",
        "supplement": "supplement",
        "respond": "answer to the invitation",
        "review": "review",
        "synthesis": "synthesis of the conclusion",
        "approval": "approval of the conclusion",
        "adoption": "answer on adoption",
        "email": "e-mail",
        "webhook": "webhook",
        "links": "Act on the portal now (each link works once):",
        "link_accept": "Accept",
        "link_decline": "Decline",
        "link_opinion": "Write your opinion",
        "link_conclusion": "Draft the conclusion",
        "link_supplement": "Supplement the request",
        "link_adoption": "Answer on adoption",
        "link_request": "See the request",
        "links_office": "On the portal (sign in with your own address):",
        "link_case": "Open the request",
    },
}


@dataclass(frozen=True)
class Message:
    subject: str
    text: str
    html: str


def _date(value: Any) -> str:
    if not value:
        return ""
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if at.tzinfo is not None:
        at = at.astimezone(LOCAL)
    return at.strftime("%d/%m/%Y")


@lru_cache(maxsize=len(LANGUAGES))
def _catalogue(language: str) -> tuple[jinja2.Environment, dict[str, dict[str, str]]]:
    env = jinja2.Environment(autoescape=False, keep_trailing_newline=False)
    labels = LABELS[language]
    env.filters["date"] = _date
    env.filters["label"] = lambda v: labels.get(str(v), str(v)) if v is not None else ""
    with (TEMPLATES / f"{language}.toml").open("rb") as f:
        return env, tomllib.load(f)


def events(language: str) -> set[str]:
    return set(_catalogue(language)[1])


def render(
    event: str,
    language: str,
    context: dict[str, Any],
    *,
    union: UnionIdentity,
    links: list[tuple[str, str]] = (),
    heading: str = "links",
) -> Message:
    """KeyError for an event without a template: a bug, caught by the catalogue test. The
    Union's identity is the deployment's, never the row's: a payload cannot sign as another.
    `links`: (label name, URL) pairs, shown above the signature (the last paragraph) under
    `heading` (the label's name: "links" for signed single-use links, "links_office" for
    the office's plain ones)."""
    language = language if language in LANGUAGES else "vi"
    env, templates = _catalogue(language)
    t = templates[event]
    context = {**context, "union": union}
    subject = " ".join(env.from_string(t["subject"]).render(**context).split())
    body = env.from_string(t["body"]).render(**context)
    paragraphs = [p.strip() for p in body.split("\n\n") if p.strip()]
    labels = LABELS[language]
    labelled = [(labels[f"link_{name}"], url) for name, url in links]
    if labelled:
        lines = [labels[heading], *(f"{label}: {url}" for label, url in labelled)]
        paragraphs.insert(max(len(paragraphs) - 1, 1), "\n".join(lines))
    text = "\n\n".join(paragraphs) + "\n"
    return Message(subject=subject, text=text, html=_html(subject, text, language, labelled))


def _html(subject: str, text: str, language: str, links: list[tuple[str, str]] = ()) -> str:
    """The same words as the plain text, escaped, one <p> per paragraph; the links' lines
    as links."""
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    linked = {f"{label}: {url}": (label, url) for label, url in links}

    def line(words: str) -> Markup:
        if words in linked:
            return Markup('<a href="{1}">{0}</a>').format(*linked[words])
        return escape(words)

    body = "\n".join(
        Markup("<p>{}</p>").format(Markup("<br>\n").join(line(x) for x in p.split("\n")))
        for p in paragraphs
    )
    return (
        f'<!doctype html>\n<html lang="{language}">\n<head><meta charset="utf-8">'
        f"<title>{escape(subject)}</title></head>\n"
        '<body style="font-family: Arial, sans-serif; line-height: 1.5; max-width: 40em">\n'
        f"{body}\n</body>\n</html>\n"
    )
