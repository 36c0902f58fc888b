"""The engine beneath the author API: what the runtime needs inside a step, kept out of what satellites import.

Step time limits (`step_limit`), the secret leak guard (`leak_guard`), step temp folders (`temp_files`) and the
row cache's writer and PostgreSQL store (`row_writer`, `row_store`, `row_result`, `row_cache_pg`). A satellite
imports `exo_dagster.sdk` and its helper modules, never this package (tests/exo_dagster/test_layers.py).
"""
