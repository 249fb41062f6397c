"""The full chaos run: every fault, one after another, and its table in ops/chaos/RESULTS.md.

    /work/venv/bin/python ops/chaos/run.py                  # or: python -m cinderblock.chaos.run
    /work/venv/bin/python ops/chaos/run.py --shape scaled   # the scale-out shape's failovers
    /work/venv/bin/python ops/chaos/run.py --faults sagas,postgres --clients 4 --volumes 2

Options are those of `cinderblock.chaos.run` (``--help``); this script only adds the default
results file next to it: the single shape's table is the part of RESULTS.md before its first
"## " heading, the scaled shape's the section "## Scale-out shape"; the file's other sections
(notes on findings) are kept.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cinderblock.chaos.run import main

SCALED_SECTION = "Scale-out shape"

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a == "--results" or a.startswith("--results=") for a in argv):
        argv += ["--results", str(Path(__file__).resolve().parent / "RESULTS.md")]
        scaled = "scaled" in argv or "--shape=scaled" in argv
        if scaled and not any(a.startswith("--section") for a in argv):
            argv += ["--section", SCALED_SECTION]
    sys.exit(main(argv))
