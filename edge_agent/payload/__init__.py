"""The tenant's payload on the agent: decrypt with K, store in the secure dir, unzip, run.

The server calls these once it holds both U and V (K = U xor V) and the verifier has
checked K (keylime-agent/src/keys_handler.rs, payloads.rs)::

    check_payload_policy(cfg.payload_script, cfg.enable_agent_mtls,
                         cfg.enable_insecure_payload)           # at start-up; may raise
    secure = await trio.to_thread.run_sync(functools.partial(
        prepare_secure_dir, cfg.data_dir / "secure", cfg.secure_size,
        is_root=os.geteuid() == 0))                              # at start-up, before run_as
    plain = decrypt_payload(k, base64.b64decode(encrypted_payload))
    deployed = await deploy_payload(secure.path, plain, k,
        dec_payload_file=cfg.dec_payload_file, enc_keyname=cfg.enc_keyname,
        extract_zip=cfg.extract_payload_zip)
    if deployed.unzipped is not None:
        await run_payload_script(deployed.unzipped, cfg.payload_script,
            allowed=cfg.enable_agent_mtls or cfg.enable_insecure_payload,
            agent_uuid=agent_id)

Modules: ``decrypt`` (AES-256-GCM, pure), ``secure_dir`` (tmpfs verified by mountinfo),
``archive`` (the safe unzip), ``deploy`` (files and the unzip, in a thread), ``script``
(the policy and the payload script), ``process`` (runs a program with a deadline, logging
its output; shared with edge_agent.revocation).  Errors: see ``errors``::

    PayloadError
    ├── PayloadDecryptError
    ├── SecureDirError
    ├── PayloadArchiveError
    ├── PayloadFileError
    ├── PayloadScriptError         the script could not start or ran past its deadline
    └── PayloadPolicyError
    ProgramTimeout (process)       run_logged's deadline (revocation actions use it)

Everything the payload path raises is a PayloadError, so one ``except PayloadError`` in the
server covers decrypting, deploying and the script.
"""

from __future__ import annotations

from edge_agent.payload.archive import UNZIPPED_DIR_NAME, extract_payload_zip
from edge_agent.payload.decrypt import decrypt_payload
from edge_agent.payload.deploy import (
    DeployedPayload,
    deploy_payload,
    deploy_payload_sync,
    write_payload_files,
)
from edge_agent.payload.errors import (
    PayloadArchiveError,
    PayloadDecryptError,
    PayloadError,
    PayloadFileError,
    PayloadPolicyError,
    PayloadScriptError,
    SecureDirError,
)
from edge_agent.payload.process import ProgramTimeout, run_logged
from edge_agent.payload.script import check_payload_policy, run_payload_script
from edge_agent.payload.secure_dir import (
    SecureDir,
    is_tmpfs_mounted,
    mount_fs_type,
    prepare_secure_dir,
)

__all__ = [
    "UNZIPPED_DIR_NAME",
    "DeployedPayload",
    "PayloadArchiveError",
    "PayloadDecryptError",
    "PayloadError",
    "PayloadFileError",
    "PayloadPolicyError",
    "PayloadScriptError",
    "ProgramTimeout",
    "SecureDir",
    "SecureDirError",
    "check_payload_policy",
    "decrypt_payload",
    "deploy_payload",
    "deploy_payload_sync",
    "extract_payload_zip",
    "is_tmpfs_mounted",
    "mount_fs_type",
    "prepare_secure_dir",
    "run_logged",
    "run_payload_script",
    "write_payload_files",
]
