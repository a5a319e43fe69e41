"""The push documents: what the agent offers and sends, and what it accepts from a verifier."""

from __future__ import annotations

import base64
import dataclasses
import email.utils
from typing import Any

import pytest

from attest_protocol.quote import KeylimeQuote
from edge_agent.ima import ImaSlice
from edge_agent.push.errors import BadVerifierResponse, PushError
from edge_agent.push.evidence import (
    ImaRequest,
    Offer,
    QuoteRequest,
    UefiRequest,
    capabilities_request,
    ima_evidence,
    parse_requested,
    quote_evidence,
)
from edge_agent.push.session import parse_challenge, parse_token, proof_request, session_request
from edge_agent.push.transport import MAX_RETRY_AFTER_S, retry_after_seconds
from tests.agent_push.fakes import ima_requested, make_ak, quote_requested


def offer(**changes: Any) -> Offer:
    base = Offer(make_ak(), "ak", "2026-12-03T13:11:57Z", 3, None, "2.1")
    return dataclasses.replace(base, **changes)


def test_session_documents() -> None:
    assert session_request("a1") == {
        "data": {
            "type": "session",
            "attributes": {
                "agent_id": "a1",
                "authentication_supported": [
                    {"authentication_class": "pop", "authentication_type": "tpm_pop"}
                ],
            },
        }
    }
    proof = proof_request("a1", "s1", b"\x01", b"\x02")["data"]
    assert proof["id"] == "s1"
    assert proof["attributes"]["authentication_provided"][0]["data"] == {
        "message": "AQ==",
        "signature": "Ag==",
    }


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"data": {"id": "s", "attributes": {"authentication_requested": []}}},
        {"data": {"attributes": {"authentication_requested": [{"authentication_class": "pop"}]}}},
        {
            "data": {
                "id": "s",
                "attributes": {
                    "authentication_requested": [
                        {
                            "authentication_class": "pop",
                            "authentication_type": "tpm_pop",
                            "chosen_parameters": {"challenge": "not base64!"},
                        }
                    ]
                },
            }
        },
    ],
)
def test_a_bad_challenge_answer_is_refused(doc: Any) -> None:
    with pytest.raises(BadVerifierResponse):
        parse_challenge(doc)


def test_only_a_passed_session_gives_a_token() -> None:
    ok = {"data": {"attributes": {"evaluation": "pass", "token": "s.t"}}}
    assert parse_token(ok) == "s.t"
    with pytest.raises(PushError, match="'fail'"):
        parse_token({"data": {"attributes": {"evaluation": "fail"}}})


def test_capabilities_offer_the_ak_and_the_logs_present() -> None:
    o = offer(uefi_entries=42)
    attrs = capabilities_request(o)["data"]["attributes"]
    quote, uefi, ima = attrs["evidence_supported"]
    caps = quote["capabilities"]
    assert caps["component_version"] == "2.0"
    assert caps["available_subjects"] == {"sha256": list(range(24))}
    key = caps["certification_keys"][0]
    assert key["local_identifier"] == o.ak.name.hex()
    assert base64.b64decode(key["public"]) == o.ak.public
    assert (key["key_algorithm"], key["key_size"]) == ("rsa", 2048)
    assert key["allowable_signature_schemes"] == ["rsassa"]
    assert uefi["capabilities"]["entry_count"] == 42
    assert ima["capabilities"] == {
        "entry_count": 3,
        "supports_partial_access": True,
        "appendable": True,
        "formats": ["text/plain"],
    }
    assert attrs["system_info"] == {"boot_time": "2026-12-03T13:11:57Z"}
    bare = capabilities_request(offer(ima_entries=None))["data"]["attributes"]
    assert [i["evidence_type"] for i in bare["evidence_supported"]] == ["tpm_quote"]


def test_requested_evidence_is_parsed_in_order() -> None:
    uefi = {"evidence_class": "log", "evidence_type": "uefi_log", "chosen_parameters": {}}
    doc = {
        "data": {
            "attributes": {
                "evidence_requested": [ima_requested(4), quote_requested([23, 10, 10]), uefi]
            }
        }
    }
    ima, quote, boot = parse_requested(doc)
    assert ima == ImaRequest(4, None)
    assert isinstance(quote, QuoteRequest) and quote.pcrs == (10, 23)
    assert boot == UefiRequest()


@pytest.mark.parametrize(
    "item",
    [
        quote_requested([24]),
        quote_requested([]),
        quote_requested([True]),
        ima_requested(-1),
        {"evidence_class": "log", "evidence_type": "secret_file", "chosen_parameters": {}},
        {"evidence_type": "tpm_quote"},
    ],
)
def test_bad_requests_are_refused(item: Any) -> None:
    with pytest.raises(BadVerifierResponse):
        parse_requested({"data": {"attributes": {"evidence_requested": [item]}}})


def test_evidence_items() -> None:
    quote = quote_evidence(KeylimeQuote(b"a", b"s", b"p"))
    assert quote["data"] == {"message": "YQ==", "signature": "cw==", "subject_data": "cA=="}
    part = ImaSlice(2, "l2\nl3\nl4\n", 5)
    assert ima_evidence(part, None)["data"] == {"entries": "l2\nl3\nl4\n", "entry_count": 3}
    assert ima_evidence(part, 1)["data"] == {"entries": "l2\n", "entry_count": 1}
    assert ima_evidence(ImaSlice(5, "", 5), None)["data"] == {"entries": "", "entry_count": 0}


def test_retry_after_forms() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("99999") == MAX_RETRY_AFTER_S
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 10, usegmt=True)
    assert retry_after_seconds(date, now=now) == pytest.approx(10.0)
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
