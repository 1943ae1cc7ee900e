"""The codec server the Temporal UI reads payloads through, by Temporal's remote codec
protocol: `POST /portal/codec/decode` and `/portal/codec/encode` take `{"payloads": [...]}`
(Payloads in protobuf JSON; the UI names its namespace in `X-Namespace`) and answer the same
shape, through the engine's own payload codec (the EncryptionCodec of the API's Temporal
client, infra/codec.py).

Who: a signed-in operator or coordinator, known by the portal's session cookie, which the UI
sends when its codec setting includes credentials. The cookie's path is /portal, hence the
address. No session: 401; an agency's or an expert's: 403.

From where: the Temporal UI's origin (ADVISORY_TEMPORAL_UI_URL) alone gets the CORS headers
that let its pages send the cookie and read the answer, preflight included; a request from
any other Origin is refused (403, without them). The browser sends the SameSite=Lax cookie
only if the UI and the portal are one site: ports of 127.0.0.1 on one machine (not localhost
and 127.0.0.1 mixed), temporal.<union>.vn and portal.<union>.vn over https in production.

No CSRF token, because nothing here changes anything, and a page of another origin can neither
send this JSON with these headers (the preflight is refused) nor read an answer; a body that
is not application/json is refused, so a plain form cannot post here either.
"""

from __future__ import annotations

import structlog
from cryptography.exceptions import InvalidTag
from fastapi import APIRouter, Request, Response
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from infra.codec import KeyError_
from starter.api.errors import NOT_JSON, Problem
from starter.portal.pages import portal_of
from starter.portal.people import Person, session_person

router = APIRouter(include_in_schema=False)
log = structlog.get_logger("codec")
STAFF = ("operator", "coordinator")
PREFLIGHT = {
    "Access-Control-Allow-Methods": "POST",
    "Access-Control-Allow-Headers": "Content-Type, X-Namespace",
    "Access-Control-Max-Age": "600",
}


def _cors(request: Request) -> dict[str, str] | None:
    """The CORS headers for the request's Origin: the UI's gets them, a request without an
    Origin (no browser page) needs none, and any other Origin is refused (None)."""
    origin = request.headers.get("origin")
    if origin is None:
        return {}
    if origin != portal_of(request).settings.temporal_ui_origin:
        return None
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


async def _staff(request: Request) -> tuple[Person, dict[str, str]]:
    """The signed-in operator or coordinator asking, and the CORS headers to answer with,
    once the request comes from the UI's origin (or from no page at all)."""
    cors = _cors(request)
    if cors is None:
        allowed = portal_of(request).settings.temporal_ui_origin
        raise Problem(403, "Forbidden", f"only the Temporal UI ({allowed}) may call the codec")
    person = await session_person(request)
    if person is None:
        why = "sign in to the portal as an operator or a coordinator"
        raise Problem(401, "Unauthorized", why, headers=cors)
    if person.role not in STAFF:
        raise Problem(
            403, "Forbidden", "only operators and coordinators may read payloads", headers=cors
        )
    return person, cors


def _invalid(field: str, message: str, cors: dict[str, str]) -> Problem:
    return Problem(
        422,
        "Invalid input",
        f"{field}: {message}",
        kind="validation",
        errors=[{"field": field, "message": message}],
        headers=cors,
    )


async def _payloads(request: Request, cors: dict[str, str]) -> list[Payload]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise _invalid("body", NOT_JSON, cors)
    try:
        # Fields a newer UI adds to a payload are not ours to judge.
        body = json_format.Parse(await request.body(), Payloads(), ignore_unknown_fields=True)
    except json_format.ParseError as err:
        raise _invalid("body", f"not Payloads in protobuf JSON: {err}", cors) from None
    return list(body.payloads)


def _answer(payloads: list[Payload], cors: dict[str, str]) -> Response:
    return Response(
        json_format.MessageToJson(Payloads(payloads=payloads)),
        media_type="application/json",
        # What it answers is a person's data in clear: never kept by a cache.
        headers={**cors, "Cache-Control": "no-store"},
    )


@router.options("/codec/decode")
@router.options("/codec/encode")
async def preflight(request: Request) -> Response:
    cors = _cors(request)
    if not cors or request.headers.get("access-control-request-method") != "POST":
        return Response(status_code=403)  # no CORS headers: the browser sends nothing
    return Response(status_code=204, headers={**cors, **PREFLIGHT})


@router.post("/codec/decode")
async def decode(request: Request) -> Response:
    person, cors = await _staff(request)
    codec = request.app.state.client.data_converter.payload_codec
    out: list[Payload] = []
    # One at a time, so a payload that cannot be opened is named by its place.
    for i, payload in enumerate(await _payloads(request, cors)):
        try:
            out += await codec.decode([payload]) if codec else [payload]
        except KeyError_ as err:
            raise _invalid(f"payloads[{i}]", str(err), cors) from None
        except (InvalidTag, ValueError):
            raise _invalid(
                f"payloads[{i}]",
                "cannot be decrypted: altered, cut short, or sealed with a key this engine "
                "does not have",
                cors,
            ) from None
    # Who read what kind of data in clear, by registry code (never a name).
    log.info("payloads decoded", role=person.role, code=person.code, count=len(out))
    return _answer(out, cors)


@router.post("/codec/encode")
async def encode(request: Request) -> Response:
    _, cors = await _staff(request)
    codec = request.app.state.client.data_converter.payload_codec
    payloads = await _payloads(request, cors)
    return _answer(await codec.encode(payloads) if codec else payloads, cors)
