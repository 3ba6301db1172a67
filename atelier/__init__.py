"""atelier: a PostgreSQL development environment of many containers, driven by Invoke."""
