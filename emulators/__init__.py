"""Local stand-ins for Google Calendar v3 and Exchange EWS, spoken to by the real clients."""
