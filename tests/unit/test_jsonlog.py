"""service_kit.jsonlog: one JSON object per line with the agent, event and reason as fields."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

import pytest

from service_kit.jsonlog import JsonFormatter, configure_logging


def _line(record: logging.LogRecord) -> dict[str, object]:
    text = JsonFormatter().format(record)
    assert "\n" not in text
    parsed = json.loads(text)
    assert isinstance(parsed, dict)
    return parsed


def _record(logger: logging.Logger, message: str, **extra: object) -> logging.LogRecord:
    return logger.makeRecord(
        logger.name, logging.WARNING, __file__, 1, message, ("x",), None, extra=extra
    )


def test_fields_of_a_plain_line() -> None:
    line = _line(_record(logging.getLogger("limelet.verifier"), "quote from %s refused"))
    assert line["level"] == "WARNING"
    assert line["logger"] == "limelet.verifier"
    assert line["message"] == "quote from x refused"
    assert str(line["timestamp"]).endswith("+00:00")
    assert "agent_id" not in line and "event_id" not in line and "reason" not in line


def test_agent_event_and_reason_are_fields() -> None:
    record = _record(
        logging.getLogger("limelet.verifier"),
        "attestation failed %s",
        agent_id="d432fbb3-d2f1-4a97-9ef7-75bd81c00000",
        event_id="ima.policy.hash_mismatch",
        reason="/usr/bin/evil: hash not allowed\nsecond line",
        colour="not a log field",
    )
    line = _line(record)
    assert line["agent_id"] == "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"
    assert line["event_id"] == "ima.policy.hash_mismatch"
    assert line["reason"] == "/usr/bin/evil: hash not allowed\nsecond line"
    assert "colour" not in line


def test_traceback_goes_in_exception() -> None:
    logger = logging.getLogger("limelet.test")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = _line(record)
    assert "RuntimeError: boom" in str(line["exception"])


def test_configure_json_writes_json_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root.handlers[:] = []
    try:
        configure_logging("json", "%(message)s")
        logging.getLogger("limelet.registrar").info("hello", extra={"agent_id": "a1"})
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    line = json.loads(stream.getvalue().strip())
    assert line["message"] == "hello" and line["agent_id"] == "a1"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        configure_logging("xml", "%(message)s")


def test_the_flag_wins_over_the_config_key() -> None:
    from registrar_lite.config import RegistrarConfig
    from service_kit.cli import log_format
    from verifier_lite.config import VerifierConfig

    for config in (VerifierConfig(log_format="json"), RegistrarConfig(log_format="json")):
        assert log_format(None, config) == "json"
        assert log_format("text", config) == "text"
    assert log_format(None, object()) == "text"
    assert log_format(None, VerifierConfig()) == "text"


def test_the_config_key_is_read_from_the_file(tmp_path: Path) -> None:
    from registrar_lite.config import load_config as load_registrar
    from registrar_lite.errors import ConfigError as RegistrarConfigError
    from verifier_lite.config import load_config as load_verifier

    conf = tmp_path / "service.toml"
    conf.write_text('log_format = "json"\n', encoding="utf-8")
    assert load_verifier(conf, {}).log_format == "json"
    assert load_registrar(conf, {}).log_format == "json"
    conf.write_text('log_format = "yaml"\n', encoding="utf-8")
    with pytest.raises(RegistrarConfigError, match="log_format"):
        load_registrar(conf, {})
