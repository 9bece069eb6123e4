"""Fixture corpus for the parser tests, in the manner of icalendar's conftest: real files
arranged by kind, and helpers to load them by name."""

from __future__ import annotations

from pathlib import Path

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
