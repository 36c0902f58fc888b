"""A cluster's declarations as the Dagster objects that carry them, for the compiler and the sections alike:
`partitions:` (partitions.py) and `retries:`/`retry:` (retry_policy.py)."""
