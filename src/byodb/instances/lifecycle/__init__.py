"""One user database's lifecycle: test, save, provision, move, switch, retry, disconnect."""
