"""One user database's lifecycle: URL guard, connection test, deploy, state, data moves."""
