"""`cinderblock config`: the effective settings and where each came from (default, a config
file's option, an environment variable, the command line), secrets masked; with
``--reference``, the reference of every setting (docs/configuration.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cinderblock.config.settings import Resolved, masked, setting_text


def run(args: argparse.Namespace, resolved: Resolved, files: list[Path]) -> int:
    if args.reference:
        from cinderblock.config.reference import render_reference

        print(render_reference(), end="")
        return 0
    from cinderblock.config.files import ignored_options

    shown = masked(resolved.settings)
    ignored = ignored_options(files) if files else []
    if args.json:
        settings = {
            name: {"value": setting_text(value), "from": resolved.origins[name]}
            for name, value in shown.items()
        }
        print(json.dumps({"settings": settings, "ignored": ignored}, indent=2))
        return 0
    width = max(len(name) for name in shown)
    for name, value in shown.items():
        print(f"{name:<{width}}  {setting_text(value):<30}  ({resolved.origins[name]})")
    for option in ignored:
        print(f"ignored: {option}")
    return 0
