"""Calendar field mapping between EWS CalendarItems and Google events (pure).

Filled in by the real-time mirroring and full-fidelity mapping issues.
"""
