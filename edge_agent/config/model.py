"""AgentConfig: every ``[agent]`` option of rust-keylime's keylime-agent.conf, frozen and typed.

The field list *is* the option table: names, types and defaults are rust-keylime's
(keylime-agent.conf, keylime/src/config/base.rs).  Where base.rs and the shipped
keylime-agent.conf disagree (``version``, ``iak_idevid_template``, ``run_as``), the shipped file
wins, because it is what a device actually runs with.

``metadata`` marks each option:

* ``implemented`` -- False for options limelet accepts (so a rust-keylime agent.conf loads
  unchanged) but does not act on yet; setting one to a non-default value logs one warning.
* ``secret`` -- never printed by ``--check-config`` and never echoed in an error.

Paths are kept as written; the ``*_path`` properties resolve them as rust-keylime does
(``config_get_file_path`` in base.rs): "default" or "" is the default file name in
``keylime_dir``, a relative path is relative to ``keylime_dir``, an absolute one is used as is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.config import defaults as d
from edge_agent.config.values import split_list
from edge_agent.tpm.config import TpmConfig

__all__ = ["AgentConfig", "option_names", "option_spec"]

_NOT_YET: dict[str, Any] = {"implemented": False}
_SECRET: dict[str, Any] = {"secret": True}
_SECRET_NOT_YET: dict[str, Any] = {"implemented": False, "secret": True}


@dataclass(frozen=True)
class AgentConfig:
    """The effective ``[agent]`` table after files, snippets and KEYLIME_AGENT_* variables."""

    version: str = d.DEFAULT_CONFIG_VERSION
    api_versions: str = d.DEFAULT_API_VERSIONS
    uuid: str = d.DEFAULT_UUID
    ip: str = d.DEFAULT_IP
    port: int = d.DEFAULT_PORT
    contact_ip: str = d.DEFAULT_CONTACT_IP
    contact_port: int = d.DEFAULT_CONTACT_PORT
    registrar_ip: str = d.DEFAULT_REGISTRAR_IP
    registrar_port: int = d.DEFAULT_REGISTRAR_PORT
    registrar_tls_port: int = field(default=d.DEFAULT_REGISTRAR_TLS_PORT, metadata=_NOT_YET)
    registrar_tls_enabled: bool = field(default=False, metadata=_NOT_YET)
    registrar_tls_ca_cert: str = field(default=d.DEFAULT_KEYWORD, metadata=_NOT_YET)
    enable_agent_mtls: bool = True
    keylime_dir: str = d.DEFAULT_KEYLIME_DIR
    server_key: str = d.DEFAULT_KEYWORD
    server_key_password: str = field(default="", metadata=_SECRET)
    payload_key: str = d.DEFAULT_KEYWORD
    payload_key_password: str = field(default="", metadata=_SECRET)
    server_cert: str = d.DEFAULT_KEYWORD
    trusted_client_ca: str = d.DEFAULT_KEYWORD
    enc_keyname: str = d.DEFAULT_ENC_KEYNAME
    dec_payload_file: str = d.DEFAULT_DEC_PAYLOAD_FILE
    secure_size: str = d.DEFAULT_SECURE_SIZE
    extract_payload_zip: bool = True
    enable_revocation_notifications: bool = field(default=False, metadata=_NOT_YET)
    revocation_actions_dir: str = d.DEFAULT_REVOCATION_ACTIONS_DIR
    revocation_notification_ip: str = field(
        default=d.DEFAULT_REVOCATION_NOTIFICATION_IP, metadata=_NOT_YET
    )
    revocation_notification_port: int = field(
        default=d.DEFAULT_REVOCATION_NOTIFICATION_PORT, metadata=_NOT_YET
    )
    revocation_cert: str = d.DEFAULT_KEYWORD
    revocation_actions: str = ""
    payload_script: str = d.DEFAULT_PAYLOAD_SCRIPT
    enable_insecure_payload: bool = False
    allow_payload_revocation_actions: bool = True
    tpm_hash_alg: str = d.DEFAULT_TPM_HASH_ALG
    tpm_encryption_alg: str = d.DEFAULT_TPM_ENCRYPTION_ALG
    tpm_signing_alg: str = d.DEFAULT_TPM_SIGNING_ALG
    ek_handle: str = d.DEFAULT_EK_HANDLE
    tcti: str = d.DEFAULT_TCTI
    enable_iak_idevid: bool = field(default=False, metadata=_NOT_YET)
    iak_idevid_template: str = field(default=d.DEFAULT_IAK_IDEVID_TEMPLATE, metadata=_NOT_YET)
    iak_idevid_asymmetric_alg: str = field(
        default=d.DEFAULT_IAK_IDEVID_ASYMMETRIC_ALG, metadata=_NOT_YET
    )
    iak_idevid_name_alg: str = field(default=d.DEFAULT_IAK_IDEVID_NAME_ALG, metadata=_NOT_YET)
    idevid_password: str = field(default="", metadata=_SECRET_NOT_YET)
    idevid_handle: str = field(default="", metadata=_NOT_YET)
    iak_password: str = field(default="", metadata=_SECRET_NOT_YET)
    iak_handle: str = field(default="", metadata=_NOT_YET)
    iak_cert: str = field(default=d.DEFAULT_KEYWORD, metadata=_NOT_YET)
    idevid_cert: str = field(default=d.DEFAULT_KEYWORD, metadata=_NOT_YET)
    tpm_ownerpassword: str = field(default="", metadata=_SECRET)
    run_as: str = d.DEFAULT_RUN_AS
    agent_data_path: str = d.DEFAULT_KEYWORD
    ima_ml_path: str = d.DEFAULT_KEYWORD
    measuredboot_ml_path: str = d.DEFAULT_KEYWORD
    # Push model (API 3.0; rust-keylime keylime/src/config/push_model.rs).  ``push_model`` is
    # limelet's own switch: rust-keylime ships the push agent as a separate program.
    push_model: bool = False
    attestation_interval_seconds: int = d.DEFAULT_ATTESTATION_INTERVAL_SECONDS
    verifier_url: str = d.DEFAULT_VERIFIER_URL
    verifier_tls_ca_cert: str = d.DEFAULT_KEYWORD
    registrar_api_versions: str = field(default=d.DEFAULT_API_VERSIONS, metadata=_NOT_YET)
    certification_keys_server_identifier: str = d.DEFAULT_CERTIFICATION_KEYS_SERVER_IDENTIFIER
    uefi_logs_evidence_version: str = d.DEFAULT_UEFI_LOGS_EVIDENCE_VERSION
    exponential_backoff_initial_delay: int = d.DEFAULT_EXPONENTIAL_BACKOFF_INITIAL_DELAY_MS
    exponential_backoff_max_retries: int = d.DEFAULT_EXPONENTIAL_BACKOFF_MAX_RETRIES
    exponential_backoff_max_delay: int = d.DEFAULT_EXPONENTIAL_BACKOFF_MAX_DELAY_MS
    tls_accept_invalid_certs: bool = field(default=False, metadata=_NOT_YET)
    tls_accept_invalid_hostnames: bool = field(default=False, metadata=_NOT_YET)

    # -- derived values ------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """``keylime_dir`` (already overridden by KEYLIME_DIR when that is set)."""
        return Path(self.keylime_dir or d.DEFAULT_KEYLIME_DIR)

    def _in_data_dir(self, value: str, default_name: str) -> Path:
        if value in ("", d.DEFAULT_KEYWORD):
            return self.data_dir / default_name
        path = Path(value)
        return path if path.is_absolute() else self.data_dir / path

    @property
    def server_key_path(self) -> Path:
        return self._in_data_dir(self.server_key, d.DEFAULT_SERVER_KEY_FILE)

    @property
    def server_cert_path(self) -> Path:
        return self._in_data_dir(self.server_cert, d.DEFAULT_SERVER_CERT_FILE)

    @property
    def payload_key_path(self) -> Path:
        return self._in_data_dir(self.payload_key, d.DEFAULT_PAYLOAD_KEY_FILE)

    @property
    def trusted_client_ca_paths(self) -> tuple[Path, ...]:
        """The CA files client certificates must chain to; the option is a list (base.rs)."""
        items = split_list(self.trusted_client_ca) or [d.DEFAULT_KEYWORD]
        return tuple(self._in_data_dir(item, d.DEFAULT_TRUSTED_CLIENT_CA_FILE) for item in items)

    @property
    def verifier_tls_ca_path(self) -> Path:
        """The CA the verifier's server certificate must chain to (push model)."""
        return self._in_data_dir(self.verifier_tls_ca_cert, d.DEFAULT_VERIFIER_TLS_CA_FILE)

    @property
    def ima_ml_file(self) -> Path:
        """``ima_ml_path``: "default" is the kernel's securityfs file; relative is from /."""
        return _in_root(self.ima_ml_path, d.DEFAULT_IMA_ML_FILE)

    @property
    def measuredboot_ml_file(self) -> Path:
        return _in_root(self.measuredboot_ml_path, d.DEFAULT_MEASUREDBOOT_ML_FILE)

    def tpm_config(self) -> TpmConfig:
        """The TPM layer's settings (the ``TCTI`` variable, as in rust, wins over ``tcti``)."""
        return TpmConfig.from_options(
            tcti=self.tcti,
            ek_handle=self.ek_handle,
            tpm_encryption_alg=self.tpm_encryption_alg,
            tpm_hash_alg=self.tpm_hash_alg,
            tpm_signing_alg=self.tpm_signing_alg,
            data_dir=self.data_dir,
            agent_data_path=self._in_data_dir(self.agent_data_path, d.DEFAULT_AGENT_DATA_FILE),
            tpm_ownerpassword=self.tpm_ownerpassword,
        )

    def display(self) -> dict[str, object]:
        """Every option with its effective value; secrets show only whether they are set."""
        shown: dict[str, object] = {}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.metadata.get("secret"):
                value = "<set>" if value else ""
            shown[spec.name] = value
        return shown


def _in_root(value: str, default: str) -> Path:
    # rust-keylime resolves the two log paths against the root directory, not keylime_dir.
    if value in ("", d.DEFAULT_KEYWORD):
        return Path(default)
    return Path(d.ROOT_DIR) / value


def option_names() -> tuple[str, ...]:
    """Every known ``[agent]`` option, in keylime-agent.conf order."""
    return tuple(spec.name for spec in dataclasses.fields(AgentConfig))


def option_spec(name: str) -> dataclasses.Field[Any]:
    """The dataclass field of option ``name`` (KeyError when there is none)."""
    for spec in dataclasses.fields(AgentConfig):
        if spec.name == name:
            return spec
    raise KeyError(name)
