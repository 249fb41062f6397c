"""Aliases for stored topics whose class moved or was renamed (none yet).

Use ``eventsourcing.utils.register_topic(old_topic, cls)`` here; every topic ever written is
listed in ``tests/contract/topics.txt`` and resolved by a test.
"""
