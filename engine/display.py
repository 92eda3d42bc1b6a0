"""How Petrel's answers show in Jupyter: plans as preformatted text, not as one escaped string."""

from __future__ import annotations

import html


class PlanText(str):
    """The text of a query plan (a ``str``), shown in a notebook as preformatted text."""

    def _repr_html_(self) -> str:
        return f"<pre style='line-height: 1.25'>{html.escape(str(self))}</pre>"

    def _repr_pretty_(self, printer: object, cycle: bool) -> None:
        printer.text(str(self))  # type: ignore[attr-defined]
