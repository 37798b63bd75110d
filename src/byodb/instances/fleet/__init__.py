"""Fleet schema migrations: runs, waves, per-instance records, their jobs, and migrating
one database."""
