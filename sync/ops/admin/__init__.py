"""The admin console and the server of /metrics, /healthz and /readyz (issue 16)."""
