"""The work of the pipeline: plain functions over archives, signals and the Parquet store.

Nothing here imports Prefect, so worker processes start fast; flows/ wraps what it calls.
"""
