"""AI: LLM completions and text embeddings (torch/aiohttp are imported only when a step runs)."""

from satellites.ai import embed_text, llm_complete  # noqa: F401
