"""The satellite catalog: the registry of satellites by id, and where satellites are discovered."""
