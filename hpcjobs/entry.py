"""The ``hpcjobs`` program: ``render`` and ``submit`` go to the user's warm server when one is up
(:mod:`hpcjobs.warm`); everything else, and every call the server cannot take, runs here."""

from __future__ import annotations

import sys


def main() -> None:
    from hpcjobs.warm import client

    code = client.run(sys.argv)
    if code is not None:
        client.exit_as(code)
    from hpcjobs.cli import main as cli_main

    try:
        cli_main()
    finally:
        if client.server_wanted is not None:
            client.start_server(client.server_wanted)
