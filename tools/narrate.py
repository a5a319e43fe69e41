"""How the demo speaks: numbered steps and indented details, flushed as they happen."""

from __future__ import annotations


def say(step: str, text: str) -> None:
    print(f"\n[{step}] {text}", flush=True)


def detail(text: str) -> None:
    print(f"      {text}", flush=True)
