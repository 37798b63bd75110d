"""Content operations, one module per content area. Every function takes the router and the
signed-in user, asks the router for the database, and scopes every query to that user —
identical behaviour on main and on a user's own database."""
