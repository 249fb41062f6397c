"""The replay progress bar: in place on a terminal, plain lines otherwise."""

from __future__ import annotations

import io

from cinderblock.cli.progress import Bar


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    bar = Bar("replay", stream=out, tty=False, every=0.0)
    bar(500, 1_000)
    bar(1_000, 1_000)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert " 50.0% 500/1,000 events " in lines[0]
    assert "events/s ETA " in lines[0]
    assert "100.0% 1,000/1,000" in lines[1]
    assert "\r" not in out.getvalue()


def test_redrawn_in_place_on_a_terminal() -> None:
    out = io.StringIO()
    bar = Bar("replay", stream=out, tty=True, every=0.0)
    bar(1, 4)
    bar(4, 4)
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 2
    assert text.endswith("\n")
    assert "[" + "#" * 30 + "]" in text
