"""Health of users' databases: check one, sweep the fleet, report, passive health, their jobs."""
