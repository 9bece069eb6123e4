"""Operations (issue 16): Prometheus metrics (`metrics`), health checks (`health`), the admin
console (`console`, `server`) and the pause flag the runs and the outbox worker honour
(`pause`). `metrics` and `pause` sit beside the backends and the state (the sources and the
backends call them); the rest sits with the commands, which start the server."""
