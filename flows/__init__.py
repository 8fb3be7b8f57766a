"""Prefect flows, one module per flow, and the `msaic` command line that runs them."""
