"""How runs and steps execute: the GPU-aware local executor, the run guard (SLA, sections), the routing launcher,
tags, the Dagster home."""
