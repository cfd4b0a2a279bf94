"""Orchestration: Prefect flows and the typer CLI. The only package that imports prefect or typer."""
