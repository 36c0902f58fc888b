"""Documents: parse documents to text, split text into chunks."""

from satellites.documents import chunk_text, parse_document  # noqa: F401
