"""The pipeline's work as plain functions, which the Prefect flows in `flows/` wrap as tasks.

The name is the product's layout, not Prefect's `@task`: nothing here imports Prefect, so worker
processes start fast and every function is tested directly. One package per concern: `ingest`,
`quality`, `features`, `report`, `review`, `scoring`, `store`, `synth`; `runner` is the one shard
runner every stage uses, `settings` the one typed run configuration. docs/ARCHITECTURE.md has
the layers: a package imports only those below it (checked by `make lint`).
"""
