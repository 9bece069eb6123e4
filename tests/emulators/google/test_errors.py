"""The stand-in's error table against Google's published bodies (fixtures/google/errors/).

The fixtures are copies of the errors guide's examples; the stand-in builds its bodies in
code, so this comparison is what keeps the two from drifting.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from emulators.google import errors
from tests.emulators.google.conftest import ERRORS

TABLE: list[tuple[str, Callable[[], errors.GoogleApiError]]] = [
    ("400_timeRangeEmpty", errors.time_range_empty),
    ("401_authError", errors.auth_error),
    ("403_rateLimitExceeded", lambda: errors.rate_limit_exceeded(403)),
    ("404_notFound", errors.not_found),
    ("409_duplicate", errors.duplicate),
    ("410_deleted", errors.deleted),
    ("410_fullSyncRequired", errors.full_sync_required),
    ("412_conditionNotMet", errors.condition_not_met),
    ("429_rateLimitExceeded", lambda: errors.rate_limit_exceeded(429)),
    ("500_backendError", errors.backend_error),
]


@pytest.mark.parametrize(("name", "make"), TABLE, ids=[n for n, _ in TABLE])
def test_body_matches_googles_published_example(name: str,
                                                make: Callable[[], errors.GoogleApiError]
                                                ) -> None:
    published = json.loads((ERRORS / f"{name}.json").read_text())
    error = make()
    # Same keys in the same order, same values, and the status is error.code.
    assert json.dumps(error.body) == json.dumps(published)
    assert error.status == published["error"]["code"]


def test_every_fixture_is_covered() -> None:
    names = {p.stem for p in Path(ERRORS).glob("*.json")}
    assert names == {n for n, _ in TABLE}


def test_retry_after_is_a_header_not_part_of_the_body() -> None:
    error = errors.rate_limit_exceeded(429, retry_after=7)
    assert error.headers == {"Retry-After": "7"}
    assert "Retry-After" not in json.dumps(error.body)
