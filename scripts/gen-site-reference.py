#!/usr/bin/env python3
"""Write docs/site-config-reference.md from the site config models (or --check that it is current).

.venv/bin/python scripts/gen-site-reference.py          # regenerate
.venv/bin/python scripts/gen-site-reference.py --check  # exit 1 when out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "site-config-reference.md"


def main(argv: list[str]) -> int:
    import os
    import re

    sys.path.insert(0, str(ROOT))
    # the reference documents the core: the plugin distributions of plugins/ document their own sections
    dists = [m.group(1) for p in sorted(ROOT.glob("plugins/*/pyproject.toml"))
             if (m := re.search(r'^name\s*=\s*"([^"]+)"', p.read_text(), re.M))]
    os.environ["HPCJOBS_DISABLE_PLUGINS"] = ",".join(dists)
    from hpcjobs.site.reference import reference_markdown

    text = reference_markdown()
    if "--check" in argv:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run python scripts/gen-site-reference.py")
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
