"""A checked Cluster to Dagster definitions: assets, fan-out, retry, SLA, triggers, the failure and logs sections."""
