"""The one connection layer for users' databases (DESIGN.md §6, §7).

URL → checked target (:mod:`.guard`) → connection with its per-transaction session settings
and deadline (:mod:`.session`, :mod:`.deadlines`) → classified failure (:mod:`.failures`).
The connection test, deploy, moves, routing, fleet migrations, health checks and export all
reach a user's database through :class:`.handle.UserDatabase`, which is built from these
parts; nothing else opens a user connection, sets a user-database time limit or
classifies a user-database error.
"""
