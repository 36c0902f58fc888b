"""Every exo tag and metadata key in one module, so a reader finds what a key holds and who writes it.

A leaf: it imports nothing from exo_dagster, so every layer and every satellite may import it
(`from exo_dagster import keys`, then `keys.CLUSTER_TAG`). Keys under `exo/` are reserved: a cluster's
own `tags:` may not use them (spec.models.RESERVED_TAG_PREFIXES).
"""

from __future__ import annotations

EXO_PREFIX = "exo/"  # the namespace of every key below
DAGSTER_PREFIX = "dagster/"  # Dagster's own tags and metadata; reserved too

# --- run tags (on a job's runs; launchers and the run queue see only these) ---
CLUSTER_TAG = "exo/cluster"  # the cluster's identifier (project/name) on every run of it
TRIGGER_TAG = "exo/trigger"  # what started the run: cron, files, after, failure, logs
ROLE_TAG = "exo/role"  # a section job's section (failure, logs)
COMPUTE_TAG = "exo/compute"  # `gpu` when any step of the run needs a GPU (launchers route on it)
EXECUTOR_TAG = "exo/executor"  # which executor ran the steps
LAUNCHER_TAG = "exo/launcher"  # the route name the routing launcher sent the run to
CONCURRENCY_TAG = "exo/concurrency"  # `N:<cluster>`: the cluster's run limit, rewritten from the definition
SLOT_TAG = "exo/slot"  # the run guard's slot claim (JSON), written only by the run's own guard
SECTIONS_TAG = "exo/sections"  # `in-run` when the run ran its failure/logs sections itself
FAILURE_RUN_ID_TAG = "exo/failure-run-id"  # on a failure-section run: the failed run it reports
FAILURE_STEP_TAG = "exo/failure-step"  # on a failure-section run: the step that failed
LOGS_RUN_ID_TAG = "exo/logs-run-id"  # on a logs-section run: the run whose logs it forwards
FILES_TAG = "exo/files"  # on a files-triggered run: the new files, one a line (left out when too long)
FILES_HASH_TAG = "exo/files-hash"  # on a files-triggered run: the hash of the batch (its run key)
FILES_COUNT_TAG = "exo/files-count"  # on a files-triggered run: how many files the batch holds
AFTER_RUNS_TAG = "exo/after-runs"  # on an after-triggered run: the upstream runs that succeeded, comma-separated
MAX_RUNTIME_TAG = "dagster/max_runtime"  # Dagster's run timeout (seconds), from the cluster's `sla:`
PARTITION_TAG = "dagster/partition"  # Dagster's partition key of a run

# --- op and asset tags (one step) ---
SATELLITE_TAG = "exo/satellite"  # the satellite's name (as metadata: id@version)
GPU_TAG = "exo/gpu"  # how many GPUs the step needs (the local executor leases them)
RESOURCES_TAG = "exo/resources"  # the step's whole `resources:` declaration, JSON
GPU_TYPE_LABEL = "exo/gpu-type"  # Kubernetes node label of a GPU node's type (`kubectl label node N exo/gpu-type=a100`)
BROKEN_TAG = "exo/broken"  # on the placeholder asset of a cluster file that failed to load
KIND_TAG_PREFIX = "dagster/kind/"  # Dagster's kind tags (icons in the UI)

# --- asset definition metadata (where a step comes from) ---
SOURCE = "exo/source"  # FILE:LINE:COL of the step (or of the config key at fault) in the YAML
SATELLITE = "exo/satellite"  # the satellite's id@version
VIEW = "exo/view"  # the DuckDB view over the asset's stored table (schema.name)
CONFIG = "exo/config"  # the step's config as shown (secrets masked), JSON
INPUT = "exo/input"  # the step's `input:` declaration, JSON
CODE_REFERENCES = "dagster/code_references"  # Dagster's link from the asset to its YAML

# --- failure metadata (on a step's Failure, so the UI points back at the YAML) ---
STEP = "exo/step"  # `identifier (name)` of the failed step
CONFIG_KEY = "exo/config-key"  # the config key at fault, when the error names one
ERROR = "exo/error"  # the exception's type name (on a broken-file asset: where the first error is)
ERROR_KIND = "exo/error-kind"  # user mistake, retryable or bug (runtime.step_failure)
CAUSE = "exo/cause"  # the cause in a few words (sdk.step_errors' BAD_VALUE, PERMISSION, ...)
TRACEBACK = "exo/traceback"  # the traceback, secrets masked
FILE = "exo/file"  # on a broken-file asset: the cluster file that failed to load
REPORT = "exo/report"  # on a broken-file asset: the whole error report (markdown)

# --- materialization metadata (what a run wrote) ---
STORAGE = "exo/storage"  # the stored format of the output (parquet, ...)
CHUNKS = "exo/chunks"  # how many chunks a fan-out step gathered
ROWS = "exo/rows"  # rows the step handled
ROWS_CACHED = "exo/rows_cached"  # rows answered from the row cache
ROWS_COMPUTED = "exo/rows_computed"  # rows computed in this run
ROWS_FAILED = "exo/rows_failed"  # rows that failed (kept, with their error)
ROWS_PER_SECOND = "exo/rows_per_second"  # computed rows per second of compute
ROW_ERRORS = "exo/row_errors"  # the first row errors, one a line
BATCHES_CACHED = "exo/batches_cached"  # notify: batches already delivered, not sent again
PARTITION = "exo/partition"  # the partition key, in the config a row cache keys on
DELIVERED_SCOPE = "exo/delivered"  # notify: the namespace of a delivered-batch record in the row cache
ROW_COUNT = "dagster/row_count"  # Dagster's row count
COLUMN_SCHEMA = "dagster/column_schema"  # Dagster's table schema
TABLE_NAME = "dagster/table_name"  # Dagster's table name (a table written elsewhere)
URI = "dagster/uri"  # Dagster's location of the stored data

# --- engine event metadata (the local GPU executor's leases) ---
LEASE = "exo/lease"  # `acquired` or `released`
DEVICES = "exo/devices"  # the devices leased, e.g. `0,1`
GPU = "exo/gpu"  # on a step worker's start: how many GPU devices it leases

# --- LLM usage metadata (satellites.ai.llm_complete) ---
LLM_MODEL = "exo/llm/model"  # the model asked
LLM_REQUESTS = "exo/llm/requests"  # HTTP requests sent
LLM_RETRIES = "exo/llm/retries"  # requests retried
LLM_RATE_LIMITED = "exo/llm/rate_limited"  # 429 answers
LLM_SERVER_ERRORS = "exo/llm/server_errors"  # 5xx answers
LLM_TIMEOUTS = "exo/llm/timeouts"  # requests that timed out
LLM_REASKS = "exo/llm/reasks"  # re-asks after an answer failed its schema
LLM_PROMPT_TOKENS = "exo/llm/prompt_tokens"  # tokens sent
LLM_COMPLETION_TOKENS = "exo/llm/completion_tokens"  # tokens received
LLM_TOTAL_TOKENS = "exo/llm/total_tokens"  # both
LLM_ROWS_FAILED = "exo/llm/rows_failed"  # rows with no valid answer
LLM_ESTIMATED_COST_USD = "exo/llm/estimated_cost_usd"  # tokens times the configured prices
LLM_COST_NOTE = "exo/llm/cost_note"  # why no cost is estimated (no price known for the model)
LLM_BATCH_FILE = "exo/llm/batch_file"  # the batch request file written
LLM_BATCH_REQUESTS = "exo/llm/batch_requests"  # requests written to it
LLM_BATCH_ALREADY_DONE = "exo/llm/batch_already_done"  # rows already answered, not written
LLM_BATCH_RESULTS = "exo/llm/batch_results"  # the batch results file read

# --- embedding usage metadata (satellites.ai.embed_text) ---
EMBED_MODEL = "exo/embed/model"  # the embedding model
EMBED_DEVICE = "exo/embed/device"  # the device it ran on (cpu, cuda:0, ...)
EMBED_DIMENSIONS = "exo/embed/dimensions"  # the vector length
EMBED_SECONDS = "exo/embed/seconds"  # seconds spent embedding

# --- resource keys (the IO managers every compiled cluster's definitions bind) ---
IO_MANAGER_KEY = "exo_io"  # the exo IO manager: each step's output stored as a table
DEFAULT_IO_MANAGER_KEY = "io_manager"  # Dagster's default IO manager key: ops' small in-between values
