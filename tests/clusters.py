"""New PostgreSQL clusters for the suite, each a copy of one ``initdb``'d data directory.

``initdb`` takes about 3 s on the CI machine, a copy about half a second. The template is
made once per test run and shared by the pytest-xdist workers (a file lock in the run's
shared temporary folder); each copy is then a cluster of its own (its own port, its own
files), so a test may stop, restart or break it without touching anybody else's.
"""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
from pathlib import Path

import pytest

from byodb.maindb.embedded import PostgresCluster


def template_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's initialised (never started) data directory, made on first use."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the folder all the workers' temporary folders are in
    root = base / "cluster-template"
    with (base / "cluster-template.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker runs initdb, the others wait for it
        PostgresCluster(root).initialise()  # nothing to do once it has been made
    return root


def _let_the_server_user_through(path: Path) -> None:
    # As root the server runs as another user (see byodb.maindb.embedded), which must be
    # able to traverse to its data directory; pytest makes its folders 0700.
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)


def started_copy(template: Path, root: Path) -> PostgresCluster:
    """A new cluster in ``root`` (a new or empty folder), copied from ``template``, started
    on a free port."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(stat.S_IMODE(template.stat().st_mode))
    # cp -a keeps the server user's ownership of the files (as root) and their modes.
    subprocess.run(["cp", "-a", f"{template}/.", str(root)], check=True, timeout=120)
    if os.geteuid() == 0:
        _let_the_server_user_through(root)
    return PostgresCluster(root).start()
