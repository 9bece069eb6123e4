"""Google and Exchange behind typed interfaces: base.py (the Protocols and errors),
google.py and exchange.py (the real clients), memory.py (in-memory ones for tests),
clients.py (one client per user and side)."""
