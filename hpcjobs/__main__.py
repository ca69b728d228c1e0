from __future__ import annotations

from hpcjobs.cli import main

main()
