"""What limelet-agent says when the registrar answers 403 to a re-registration."""

from __future__ import annotations

import pytest

from edge_agent.registrar_client import RegistrationForbidden

AGENT_ID = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"
STATUS = "Agent re-registration with different TPM identity is forbidden for security reasons"


@pytest.mark.parametrize(
    ("ak_created", "names", "advice"),
    [
        (True, "the AK changed", "Put back the agent_data.json the previous agent wrote"),
        (False, "the EK or EK certificate changed", "this is another TPM"),
        (None, "another TPM identity", "configure another uuid"),
    ],
)
def test_the_message_names_the_changed_part_and_what_to_do(
    ak_created: bool | None, names: str, advice: str
) -> None:
    message = str(RegistrationForbidden(AGENT_ID, STATUS, ak_created))
    assert names in message
    assert advice in message
    assert STATUS in message  # the registrar's own words
    assert f"keylime_tenant -c regdelete -u {AGENT_ID}" in message
    if ak_created:
        assert "another TPM" not in message  # the TPM is the same; only the AK is new
