"""Put a delivered payload in place: K and the decrypted payload, then the optional unzip.

Layout inside the secure directory (``<keylime_dir>/secure``), as rust-keylime 0.2.9 lays it
out (keylime-agent/src/payloads.rs ``setup_unzipped``, ``optional_unzip_payload``)::

    unzipped/                          the payload script's working directory
        <enc_keyname>        K, raw 32 bytes, 0600          (default "derived_tci_key")
        <dec_payload_file>   the decrypted payload, 0600    (default "decrypted_payload")
        ...                  the payload's zip, extracted safely (extract_payload_zip = true)

So a payload script written for rust-keylime finds ``./decrypted_payload`` and
``./derived_tci_key`` unchanged when the device runs limelet.  Like rust-keylime, K is written
raw and an old ``unzipped/`` is cleared when a new payload arrives.  The two files are written
after the extraction (which swaps in a whole new ``unzipped/``), so an archive entry of the
same name never replaces them; a refused archive still leaves them in ``unzipped/``.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import trio

from edge_agent.keys.errors import KeyFileError
from edge_agent.keys.files import write_private_file
from edge_agent.payload.archive import UNZIPPED_DIR_NAME, extract_payload_zip
from edge_agent.payload.errors import PayloadArchiveError, PayloadFileError

__all__ = ["DeployedPayload", "deploy_payload", "deploy_payload_sync", "write_payload_files"]

log = logging.getLogger(__name__)

# unzipped/ when no zip was extracted: private to the agent's user, like the secure dir.
UNZIPPED_DIR_MODE = 0o700


@dataclass(frozen=True)
class DeployedPayload:
    """Where the payload went; ``unzipped`` is None when it was not extracted."""

    payload_path: Path
    key_path: Path
    unzipped: Optional[Path]


def write_payload_files(
    secure_dir: Path, payload: bytes, k: bytes, *, dec_payload_file: str, enc_keyname: str
) -> tuple[Path, Path]:
    """Write the payload and K into ``secure_dir`` (0600, atomically); their paths."""
    payload_path = _plain_child(secure_dir, dec_payload_file, "dec_payload_file")
    key_path = _plain_child(secure_dir, enc_keyname, "enc_keyname")
    for path, data in ((key_path, k), (payload_path, payload)):
        try:
            write_private_file(path, data)
        except KeyFileError as exc:
            raise PayloadFileError(path, exc.reason) from exc
    log.info("wrote the payload key to %s and the payload to %s", key_path, payload_path)
    return payload_path, key_path


def deploy_payload_sync(
    secure_dir: Path,
    payload: bytes,
    k: bytes,
    *,
    dec_payload_file: str,
    enc_keyname: str,
    extract_zip: bool,
) -> DeployedPayload:
    """Blocking form of :func:`deploy_payload`."""
    target = secure_dir / UNZIPPED_DIR_NAME
    for name, option in ((dec_payload_file, "dec_payload_file"), (enc_keyname, "enc_keyname")):
        _plain_child(target, name, option)  # refuse a bad name before anything is touched
    shutil.rmtree(target, ignore_errors=True)

    def place_files() -> tuple[Path, Path]:
        target.mkdir(mode=UNZIPPED_DIR_MODE, exist_ok=True)
        return write_payload_files(
            target, payload, k, dec_payload_file=dec_payload_file, enc_keyname=enc_keyname
        )

    try:
        unzipped = extract_payload_zip(secure_dir, payload) if extract_zip else None
    except PayloadArchiveError:
        place_files()
        raise
    if unzipped is not None:
        log.info("extracted the payload to %s", unzipped)
    payload_path, key_path = place_files()
    return DeployedPayload(payload_path, key_path, unzipped)


async def deploy_payload(
    secure_dir: Path,
    payload: bytes,
    k: bytes,
    *,
    dec_payload_file: str,
    enc_keyname: str,
    extract_zip: bool,
) -> DeployedPayload:
    """Write K and the decrypted payload, and unzip it when ``extract_zip``, in a thread.

    Raises PayloadFileError or PayloadArchiveError; on a refused archive ``unzipped/`` holds
    only K and the payload file.
    """
    return await trio.to_thread.run_sync(
        lambda: deploy_payload_sync(
            secure_dir,
            payload,
            k,
            dec_payload_file=dec_payload_file,
            enc_keyname=enc_keyname,
            extract_zip=extract_zip,
        )
    )


def _plain_child(directory: Path, name: str, option: str) -> Path:
    # The names come from agent.conf; a path there would write outside the secure directory.
    if not name or "/" in name or name in (".", "..") or "\x00" in name:
        raise PayloadFileError(directory, f"{option} must be a plain file name, got {name!r}")
    return directory / name
