"""What the spec checker needs of a satellite catalog: look an id up, or say it is unknown (with suggestions).

The spec layer does not import the catalog; the caller passes one in (`exo_dagster.catalog`).
"""

from __future__ import annotations

from typing import Any, Protocol

from exo_dagster.errors import UserError


class UnknownSatellite(UserError, LookupError):
    """`uses` names no satellite. `suggestions`: close ids; `note`: why it may be missing (a plugin or a
    configured-satellite file that did not load, two distributions declaring it), added to the hint."""

    def __init__(self, uses: str, suggestions: list[str], reason: str = "unknown satellite", note: str = ""):
        super().__init__(f"{reason} `{uses}`")
        self.uses, self.suggestions, self.reason, self.note = uses, suggestions, reason, note


class SatelliteLookup(Protocol):
    def get(self, uses: str) -> Any:
        """The satellite definition (`exo_dagster.sdk.SatelliteDef`) for a `uses:` string; raises UnknownSatellite.

        A configured satellite (preset) is a definition whose `fixed_config` is a dict: the checker lets a
        step set only its `open_config` fields and validates the merge with its `config_model`."""
