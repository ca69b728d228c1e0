"""``python -m hpcjobs.images pull REF`` — the image CLI without the rest of hpcjobs' (used by
conversion jobs, so they run the same lock and publish path with the same interpreter)."""

from __future__ import annotations

from hpcjobs.cli import run_click
from hpcjobs.cli_images import images


def main(argv: list[str] | None = None) -> None:
    run_click(images, argv, "python -m hpcjobs.images")


if __name__ == "__main__":
    main()
