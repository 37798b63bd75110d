"""Keeping this host's libpq configuration away from users' databases: the file name that
names no file, the authentication methods whose secret comes from the URL, and the removal of
the ``PG*`` variables libpq would read."""

from __future__ import annotations

import functools
import logging
import os
import ssl

log = logging.getLogger(__name__)


# libpq reads a file or an environment variable for every parameter a connection does not
# set, so a connection to a user's server could carry this host's secrets (PGPASSWORD,
# ~/.pgpass, a service file's password, ~/.postgresql/postgresql.key). Two layers keep them
# out: CheckedTarget.connect_kwargs() sets every such parameter itself, and
# forget_host_libpq_environment() removes the PG* variables libpq would still read (PGSERVICE
# fills parameters left unset, PGTZ/PGDATESTYLE have no parameter at all).

# A path that can never name a file: /dev/null is a device, never a directory, so stat() of
# anything below it fails and libpq treats the file as absent — silently, whereas /dev/null
# itself would be read (and warned about as "not a plain file" when used as passfile).
NO_FILE = os.path.join(os.devnull, "byodb-no-file")
# Methods whose secret comes from the URL; "none" lets a server that asks for nothing in.
# Excluded: gss/sspi (this host's Kerberos tickets) and oauth (a flow run on this host).
URL_AUTH_METHODS = "password,md5,scram-sha-256,none"
MIN_LIBPQ_VERSION = 160000  # require_auth and sslcertmode


@functools.cache
def system_ca_file() -> str:
    """The system CA bundle for ``sslmode=verify-ca`` (libpq's ``sslrootcert=system`` is
    allowed with ``verify-full`` only); :data:`NO_FILE` when there is none, so libpq fails
    the connection instead of reading ``~/.postgresql/root.crt`` of this host."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    return NO_FILE


def forget_host_libpq_environment() -> tuple[str, ...]:
    """Remove every ``PG*`` variable from this process's environment; return their names.

    byodb never reads them (main is configured by ``BYODB_DATABASE_URL``), and libpq would
    apply them to connections to users' servers: ``PGSERVICE`` names a service file whose
    values fill every parameter a connection leaves unset, ``PGTZ``/``PGDATESTYLE``/
    ``PGGEQO`` are sent with no parameter to override them, and a future libpq may add more.
    Cheap when the environment is clean (one scan, nothing changed), so it runs before
    every user connection — which also covers a variable set after startup.
    """
    names = tuple(sorted(name for name in os.environ if name.startswith("PG")))
    for name in names:
        os.environ.pop(name, None)
    if names:
        log.warning("removed libpq environment variables %s: byodb does not use them, and "
                    "they must not reach users' databases", ", ".join(names))
    return names
