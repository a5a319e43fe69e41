"""service_kit.cli's service scaffolding: config errors, start-up failures, exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest

from attest_protocol.cli import base_parser
from service_kit.cli import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_START_FAILED,
    add_config_arguments,
    service_main,
    single_error,
)

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

PROG = "limelet-demo"


class DemoError(Exception):
    """Stands for a component's base error."""


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """service_main configures the root logger; leave it as the test found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


ONE = DemoError("one")
TWO = OSError("two")
PAIR = ExceptionGroup("two", [ONE, TWO])

# (id, raised, what single_error returns)
UNWRAP: list[tuple[str, BaseException, object]] = [
    ("plain", ONE, ONE),
    ("one-level", ExceptionGroup("g", [ONE]), ONE),
    ("nested", ExceptionGroup("g", [ExceptionGroup("h", [TWO])]), TWO),
    ("two-members-stay", PAIR, PAIR),
    ("nested-pair-stops-there", ExceptionGroup("g", [PAIR]), PAIR),
    ("base-group", BaseExceptionGroup("g", [KeyboardInterrupt()]), KeyboardInterrupt),
]


@pytest.mark.parametrize(
    ("raised", "expected"), [c[1:] for c in UNWRAP], ids=[c[0] for c in UNWRAP]
)
def test_single_error(raised: BaseException, expected: object) -> None:
    got = single_error(raised)
    if isinstance(expected, type):
        assert type(got) is expected
    else:
        assert got is expected


def _main(
    argv: list[str],
    load: Callable[[Optional[Path]], str],
    run: Callable[[str], object],
) -> int:
    parser = base_parser(PROG, "a demo service")
    add_config_arguments(parser)
    return service_main(parser, argv, load_config=load, run=run, errors=(DemoError,))


def _config(path: Optional[Path]) -> str:
    return f"config from {path}"


def _bad_config(path: Optional[Path]) -> str:
    raise DemoError("port: 70000 is not a TCP port")


def _raise(exc: BaseException) -> Callable[[str], object]:
    def run(config: str) -> object:
        raise exc

    return run


# (id, argv, load, run, exit status, stream, message)
EXITS: list[
    tuple[str, list[str], Callable[[Optional[Path]], str], Callable[[str], object], int, str, str]
] = [
    ("runs-and-stops", ["-c", "x.toml"], _config, lambda c: None, EXIT_OK, "err", ""),
    ("check-config", ["--check-config"], _config, _raise(AssertionError()), EXIT_OK, "out",
     f"{PROG}: configuration OK"),
    ("bad-config", ["--check-config"], _bad_config, lambda c: None, EXIT_CONFIG, "err",
     f"{PROG}: port: 70000 is not a TCP port"),
    ("start-error", [], _config, _raise(ExceptionGroup("g", [ONE])), EXIT_START_FAILED, "err",
     f"{PROG}: cannot start: one"),
    ("port-in-use", [], _config, _raise(ExceptionGroup("g", [ExceptionGroup("h", [TWO])])),
     EXIT_START_FAILED, "err", f"{PROG}: cannot start: two"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "load", "run", "status", "stream", "message"),
    [c[1:] for c in EXITS],
    ids=[c[0] for c in EXITS],
)
def test_exit_statuses(
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    load: Callable[[Optional[Path]], str],
    run: Callable[[str], object],
    status: int,
    stream: str,
    message: str,
) -> None:
    assert _main(argv, load, run) == status
    captured = capsys.readouterr()
    text = captured.out if stream == "out" else captured.err
    assert text.strip() == message


def test_config_path_reaches_the_loader() -> None:
    seen: list[str] = []
    assert _main(["-c", "/etc/demo.toml"], _config, seen.append) == EXIT_OK
    assert seen == ["config from /etc/demo.toml"]


@pytest.mark.parametrize(
    "raised",
    [
        ExceptionGroup("g", [ValueError("a bug")]),
        PAIR,
        BaseExceptionGroup("g", [KeyboardInterrupt()]),
    ],
    ids=["foreign-error", "two-errors", "keyboard-interrupt"],
)
def test_other_failures_propagate_unchanged(raised: BaseException) -> None:
    with pytest.raises(BaseExceptionGroup) as caught:
        _main([], _config, _raise(raised))
    assert caught.value is raised


def test_unknown_argument_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as caught:
        _main(["--bogus"], _config, lambda c: None)
    assert caught.value.code == 2
