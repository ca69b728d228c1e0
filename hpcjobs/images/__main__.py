"""``python -m hpcjobs.images pull REF`` — the image CLI without the rest of hpcjobs' (used by
conversion jobs, so they run the same lock and publish path with the same interpreter)."""

from __future__ import annotations

import sys

import click

from hpcjobs.cli_images import images
from hpcjobs.errors import HpcjobsError


def main(argv: list[str] | None = None) -> None:
    try:
        images.main(args=argv, prog_name="python -m hpcjobs.images", standalone_mode=False)
    except HpcjobsError as exc:
        click.echo("hpcjobs: error: " + " ".join(str(exc).split("\n")), err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(1)


if __name__ == "__main__":
    main()
