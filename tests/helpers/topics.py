"""Every topic ever stored (tests/contract/topics.txt), for the tests that must resolve or
read each one."""

from __future__ import annotations

from pathlib import Path

TOPICS_FILE = Path(__file__).resolve().parents[1] / "contract" / "topics.txt"
STORED = [
    line.strip()
    for line in TOPICS_FILE.read_text().splitlines()
    if line.strip() and not line.startswith("#")
]
