"""The warm start of ``hpcjobs render`` and ``hpcjobs submit``: a per-user server that has imported
click, yaml, pydantic and hpcjobs and built the job spec's validator once, and forks a child per call.

A fresh Python process spends most of a ``render`` importing those and building validators
(docs/benchmarks.md): more than the 150 ms the CLI may add to an 8 ms ``sbatch``. The client
(:mod:`hpcjobs.warm.client`, run by the ``hpcjobs`` entry point before anything heavy is imported)
hands its argv, environment, working directory, umask and its stdin/stdout/stderr file descriptors to
the server (:mod:`hpcjobs.warm.server`); the forked child takes all of them on and runs the same
``hpcjobs.cli.main`` a fresh process runs, so there is one code path, and the client exits with the
child's status. What a fork cannot take on (interpreter, flags, ``sys.path``, uid/gids, resource
limits, namespaces, cgroup, locale and ``PYTHON*`` variables) is the server's key
(:mod:`hpcjobs.warm.key`): a client whose key differs gets another server, never this one.

Off with ``HPCJOBS_WARM=0``. Everything here fails closed: any doubt (no private socket folder, a
server of another user, a changed installation, an unexpected reply) and the call runs in the
client's own process, as it always did.
"""
