"""Rebuild the read models from the event log into side tables, swap them in atomically
(``replay``) or compare them with the live ones (``verify``)."""
