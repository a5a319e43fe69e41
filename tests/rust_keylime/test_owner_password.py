"""``tpm_ownerpassword`` on swtpm: a TPM whose endorsement hierarchy has a password."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

from attest_protocol.quote import verify_quote
from attest_protocol.tpm2.public import parse_tpm2b_public
from edge_agent.tpm import TpmError
from edge_agent.tpm.config import TpmConfig
from edge_agent.tpm.errors import TpmConfigError
from edge_agent.tpm.owner_auth import parse_owner_password
from tests.swtpm.support import MASK, NONCE, config, opened
from tools.swtpm import Swtpm

PASSWORD = "s3cret-endorsement"  # noqa: S105 - a test TPM's password
TOOL_TIMEOUT_SECONDS = 30


@pytest.mark.parametrize(
    ("value", "auth"),
    [("", b""), ("abc", b"abc"), ("hex:00ff10", b"\x00\xff\x10"), ("HEX:41", b"HEX:41")],
)
def test_value_forms_as_rust_keylime_reads_them(value: str, auth: bytes) -> None:
    assert parse_owner_password(value) == auth


@pytest.mark.parametrize("value", ["hex:zz", "hex:abc", "x" * 65])
def test_bad_values_name_the_option_never_the_value(value: str) -> None:
    with pytest.raises(TpmConfigError) as caught:
        TpmConfig.from_options(tpm_ownerpassword=value, environ={})
    assert caught.value.option == "tpm_ownerpassword"
    assert value not in str(caught.value)
    assert value not in repr(TpmConfig.from_options(environ={}))


def _set_endorsement_password(tcti: str) -> None:
    subprocess.run(
        ["tpm2_changeauth", "-c", "e", PASSWORD],
        env=dict(os.environ, TPM2TOOLS_TCTI=tcti),
        check=True,
        capture_output=True,
        timeout=TOOL_TIMEOUT_SECONDS,
    )


@pytest.mark.swtpm
@pytest.mark.parametrize("form", [PASSWORD, "hex:" + PASSWORD.encode().hex()])
async def test_ek_and_ak_made_with_the_endorsement_password(
    swtpm: Swtpm, tmp_path: Path, form: str
) -> None:
    _set_endorsement_password(swtpm.tcti)
    cfg = dataclasses.replace(
        config(swtpm.tcti, tmp_path), endorsement_auth=parse_owner_password(form)
    )
    async with opened(cfg) as tpm:
        ak = await tpm.ak()
        quote = await tpm.quote(NONCE, MASK)
    verify_quote(quote, parse_tpm2b_public(ak.public), NONCE)


@pytest.mark.swtpm
async def test_without_the_password_the_tpm_refuses(swtpm: Swtpm, tmp_path: Path) -> None:
    _set_endorsement_password(swtpm.tcti)
    with pytest.raises(TpmError):
        async with opened(config(swtpm.tcti, tmp_path)) as tpm:
            await tpm.ak()
