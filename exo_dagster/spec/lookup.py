"""What the spec checker needs of a satellite catalog: look an id up, or say it is unknown (with suggestions).

The spec layer does not import the catalog; the caller passes one in (`exo_dagster.catalog`).
"""

from __future__ import annotations

from typing import Any, Protocol


class UnknownSatellite(LookupError):
    def __init__(self, uses: str, suggestions: list[str], reason: str = "unknown satellite"):
        super().__init__(f"{reason} `{uses}`")
        self.uses, self.suggestions, self.reason = uses, suggestions, reason


class SatelliteLookup(Protocol):
    def get(self, uses: str) -> Any:
        """The satellite definition (`exo_dagster.sdk.SatelliteDef`) for a `uses:` string; raises UnknownSatellite."""
