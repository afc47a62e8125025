"""Thin edges: Flask blueprints, the APScheduler job, the CLI."""
