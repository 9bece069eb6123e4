"""Fixture corpus for the parser tests, in the manner of icalendar's conftest: real files
arranged by kind, and helpers to load them by name."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "ews"
#: The shared corpus the fixtures were copied from; beside the repository on every
#: developer machine and on CI.
SHARED_CORPUS = ROOT.parent / "shared" / "corpus" / "ews"

FIXTURE_FILES = sorted(FIXTURES.glob("*/*.xml"))
SHARED_FILES = sorted(SHARED_CORPUS.glob("*/*.xml")) if SHARED_CORPUS.is_dir() else []


def load(name: str) -> bytes:
    """A fixture by its path under fixtures/ews, e.g. 'create/msdocs_..._req.xml'."""
    return (FIXTURES / name).read_bytes()


@pytest.fixture(autouse=True)
def exchangelib_must_not_warn() -> Iterator[None]:
    """A warning exchangelib raises from inside the parser means we let it see something
    it cannot read (it would go to the proxy's stderr): fail the test instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=UserWarning, module="exchangelib")
        yield
