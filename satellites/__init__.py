"""The built-in satellite catalog: importing this package registers every satellite."""

from . import get_files, read_table, sql, write_table  # noqa: F401
from . import chunk_text, delete_file, move_file, parse_document  # noqa: F401  (issue 3: documents and file ops)
from . import embed_text, llm_complete  # noqa: F401  (issue 4: AI; torch/httpx are imported only when a step runs)
from . import call_webhook, forward_logs, send_alert, send_email  # noqa: F401  (issue 6: notifications)
