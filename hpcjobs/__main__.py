from __future__ import annotations

from hpcjobs.entry import main

main()
