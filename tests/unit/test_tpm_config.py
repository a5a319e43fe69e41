"""TpmConfig (rust-keylime's option names and defaults) and the AK file, without a TPM."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edge_agent.tpm import ak_store
from edge_agent.tpm.config import DEFAULT_TCTI, TpmConfig, parse_ek_handle, resolve_tcti
from edge_agent.tpm.errors import AkMismatch, TpmConfigError

SWTPM_TCTI = "swtpm:host=127.0.0.1,port=2321"


@pytest.mark.parametrize(
    ("environ", "configured", "expected"),
    [
        ({"TCTI": SWTPM_TCTI}, "device:/dev/tpm0", SWTPM_TCTI),
        ({"TCTI": ""}, "device:/dev/tpm0", "device:/dev/tpm0"),
        ({}, None, DEFAULT_TCTI),
        ({}, "", DEFAULT_TCTI),
    ],
)
def test_tcti_resolution(environ: dict[str, str], configured: str | None, expected: str) -> None:
    assert resolve_tcti(configured, environ) == expected


@pytest.mark.parametrize(
    ("text", "expected"), [("generate", None), ("", None), ("0x81010001", 0x81010001)]
)
def test_ek_handle_option(text: str, expected: int | None) -> None:
    assert parse_ek_handle(text) == expected


def test_from_options_defaults_follow_rust_keylime(tmp_path: Path) -> None:
    cfg = TpmConfig.from_options(data_dir=tmp_path, environ={})
    assert (cfg.tcti, cfg.ek_handle) == (DEFAULT_TCTI, None)
    assert (cfg.encryption_alg, cfg.hash_alg, cfg.signing_alg) == ("rsa", "sha256", "rsassa")
    assert not cfg.is_software_tpm
    assert TpmConfig(tcti=SWTPM_TCTI).is_software_tpm
    assert TpmConfig(encryption_alg="ecc_nist_p256", signing_alg="ecdsa").encryption_alg == "ecc"


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"tpm_encryption_alg": "rsa4096"}, "tpm_encryption_alg"),
        ({"tpm_hash_alg": "md5"}, "tpm_hash_alg"),
        ({"tpm_signing_alg": "rsapss"}, "tpm_signing_alg"),
        ({"tpm_signing_alg": "ecdsa"}, "tpm_signing_alg"),  # needs tpm_encryption_alg = ecc
        ({"ek_handle": "tpm-ek"}, "ek_handle"),
        ({"ek_handle": "0x01c00002"}, "ek_handle"),  # an NV index, not a persistent object
    ],
)
def test_bad_option_names_the_option(options: dict[str, str], option: str) -> None:
    strings = {"ek_handle": "generate", "tpm_encryption_alg": "rsa", "tpm_hash_alg": "sha256"}
    strings.update({"tpm_signing_alg": "rsassa"} | options)
    with pytest.raises(TpmConfigError) as caught:
        TpmConfig.from_options(
            environ={},
            ek_handle=strings["ek_handle"],
            tpm_encryption_alg=strings["tpm_encryption_alg"],
            tpm_hash_alg=strings["tpm_hash_alg"],
            tpm_signing_alg=strings["tpm_signing_alg"],
        )
    assert caught.value.option == option
    assert option in str(caught.value)


def _stored(**changes: str) -> ak_store.StoredAk:
    fields = {"encryption_alg": "rsa", "hash_alg": "sha256", "signing_alg": "rsassa"}
    fields["ek_sha256"] = "ab" * 32
    fields.update(changes)
    return ak_store.StoredAk(public=b"\x00\x01pub", private=b"\x00\x02priv", **fields)


def test_ak_file_round_trip_is_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ak.json"
    ak_store.save(path, _stored())
    ak_store.save(path, _stored())  # replacing leaves no temp files behind
    assert ak_store.load(path, want=_stored()) == _stored()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["ak.json"]


@pytest.mark.parametrize(
    "want",
    [_stored(hash_alg="sha384"), _stored(signing_alg="ecdsa"), _stored(ek_sha256="cd" * 32)],
)
def test_ak_file_for_other_algorithms_or_ek_mismatches(
    tmp_path: Path, want: ak_store.StoredAk
) -> None:
    path = tmp_path / "ak.json"
    ak_store.save(path, _stored())
    with pytest.raises(AkMismatch):
        ak_store.load(path, want=want)


def test_ak_file_mismatch_does_not_echo_key_blobs(tmp_path: Path) -> None:
    path = tmp_path / "ak.json"
    path.write_text('{"version": 1, "public": "c2VjcmV0", "private": "!!"}')
    with pytest.raises(AkMismatch) as caught:
        ak_store.load(path, want=_stored())
    assert "c2VjcmV0" not in str(caught.value) and "!!" not in str(caught.value)
