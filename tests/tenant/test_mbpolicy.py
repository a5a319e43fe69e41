"""``limelet-tenant mbpolicy ...`` and ``add --mb-refstate/--mb-policy-name``.

The commands run against verifier_lite (the ``lite`` services of test_add_lite.py) with a
reference state made by Keylime's ``keylime-policy create measured-boot`` from a real log;
the options of ``add`` are checked where they become the verifier's request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tenant_lite.cli import build_parser
from tenant_lite.errors import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE
from tenant_lite.policy import build_policies
from tests.fixtures.keylime import KeylimeServices
from tests.tenant.agent_support import tenant
from tests.tenant.support import run_tenant, write_config
from tests.tenant.test_add_lite import LiteServices
from tests.tenant.test_add_lite import lite as lite  # the fixture, shared with that module
from tests.tenant.test_keylime_services import keylime_config
from tests.verifier.test_measured_boot_swtpm import SB_REFSTATE

ACTIONS = [["mbpolicy"], ["mbpolicy", "add"], ["mbpolicy", "update"], ["mbpolicy", "show"],
           ["mbpolicy", "list"], ["mbpolicy", "delete"]]  # fmt: skip


@pytest.mark.parametrize("command", ACTIONS, ids=" ".join)
def test_help_of_every_mbpolicy_action(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([*command, "--help"])
    assert stop.value.code == 0
    assert "usage: limelet-tenant " + " ".join(command) in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "reason"), [(None, "cannot read"), ("{not json", "is not JSON")]
)
def test_a_bad_reference_state_file_is_a_usage_error(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "state.json"
    if content is not None:
        path.write_text(content)
    config = write_config(tmp_path / "tenant.toml", verifier_port=1, registrar_port=1)
    run = run_tenant(config, "mbpolicy", "add", "m1", str(path))
    assert run.code == EXIT_USAGE, run
    assert reason in run.err


def test_add_options_reach_the_verifier_request() -> None:
    args = build_parser().parse_args(
        ["add", "a1", "--mb-refstate", str(SB_REFSTATE), "--mb-policy-name", "vm1"]
    )
    assert args.mb_policy == str(SB_REFSTATE) and args.mb_policy_name == "vm1"
    got = build_policies(
        tpm_policy=None, runtime_policy=None, runtime_policy_name=None,
        mb_policy=SB_REFSTATE.read_bytes(), mb_policy_name="vm1",
    )  # fmt: skip
    assert json.loads(got.mb_policy or "") == json.loads(SB_REFSTATE.read_text())
    assert got.mb_policy_name == "vm1"
    # keylime/config.py MEASUREDBOOT_PCRS 0-9 and 11-15 join the quote mask.
    assert int(got.tpm_policy["mask"], 16) == 0x3FF | (0x1F << 11)


async def test_mbpolicy_commands_against_verifier_lite(lite: LiteServices, tmp_path: Path) -> None:
    config = lite.tenant_config
    refstate = json.loads(SB_REFSTATE.read_text())
    added = await tenant(config, "mbpolicy", "add", "vm1", str(SB_REFSTATE))
    assert added.code == EXIT_OK, added
    assert (await tenant(config, "mbpolicy", "list")).result["names"] == ["vm1"]
    shown = (await tenant(config, "mbpolicy", "show", "vm1")).result
    assert shown["name"] == "vm1" and json.loads(shown["mb_policy"]) == refstate
    again = await tenant(config, "mbpolicy", "add", "vm1", str(SB_REFSTATE))
    assert again.code != EXIT_OK  # a name is stored once; update replaces it
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(dict(refstate, has_secureboot=False)))
    assert (await tenant(config, "mbpolicy", "update", "vm1", str(changed))).code == EXIT_OK
    shown = (await tenant(config, "mbpolicy", "show", "vm1")).result
    assert json.loads(shown["mb_policy"])["has_secureboot"] is False
    assert (await tenant(config, "mbpolicy", "delete", "vm1")).code == EXIT_OK
    assert (await tenant(config, "mbpolicy", "show", "vm1")).code == EXIT_NOT_FOUND
    assert (await tenant(config, "mbpolicy", "delete", "vm1")).code == EXIT_NOT_FOUND


@pytest.mark.interop
def test_mbpolicy_commands_against_keylime(
    keylime_services: KeylimeServices, tmp_path: Path
) -> None:
    config = keylime_config(keylime_services, tmp_path / "tenant.toml")
    refstate = json.loads(SB_REFSTATE.read_text())
    name = "tenant-test-mb"
    added = run_tenant(config, "mbpolicy", "add", name, str(SB_REFSTATE))
    assert added.code == EXIT_OK, added
    assert name in run_tenant(config, "mbpolicy", "list").result["names"]
    shown = run_tenant(config, "mbpolicy", "show", name).result
    assert shown["name"] == name and _as_json(shown["mb_policy"]) == refstate
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(dict(refstate, has_secureboot=False)))
    assert run_tenant(config, "mbpolicy", "update", name, str(changed)).code == EXIT_OK
    shown = run_tenant(config, "mbpolicy", "show", name).result
    assert _as_json(shown["mb_policy"])["has_secureboot"] is False
    assert run_tenant(config, "mbpolicy", "delete", name).code == EXIT_OK
    assert run_tenant(config, "mbpolicy", "show", name).code == EXIT_NOT_FOUND


def _as_json(value: object) -> Any:
    return json.loads(value) if isinstance(value, str) else value
