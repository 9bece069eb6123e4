"""Suite-wide settings: hypothesis profiles (deterministic on CI), and the EWS stand-in's
strict mode (every response it writes checked against Exchange's schema)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# In the environment, not a fixture: stand-ins that tests start as subprocesses (the demo,
# `calsync emulate ews`) inherit it. A response that fails the schema is then answered
# ErrorInternalServerError, which fails the test that caused it.
os.environ.setdefault("CALSYNC_EWS_STRICT_RESPONSES", "1")
