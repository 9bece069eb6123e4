"""The sources of change (layer 3): each notices changes and hands them to the one
reconciler (sync/reconcile.py); none writes on its own.

- `proxy`: what EWS clients send through mitmproxy (Observer, Observing);
- `outbox`: the worker draining the proxy's outbox (Mirror);
- `job`: a two-way run over the Exchange feed (SyncFolderItems) and the Google feed
  (sync tokens);
- `push`: Google push channels and their webhook, which start job runs.
"""
