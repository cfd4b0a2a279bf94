"""One Winnow run as library code: validate, list, embed, index, curate, write, publish.

No Prefect and no typer here: winnow.flows wraps these stages as Prefect tasks and the CLI
calls them, so the one-shot path, a scheduled deployment and a Dask cluster run the same code.
"""
