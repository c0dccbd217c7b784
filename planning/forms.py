"""The admin's "Plan a season" form: its fields map one to one onto ``PlanParameters`` and
``clean`` runs the same validation as the API and the command (``plan_parameters``); a bad
value becomes an error on its field and nothing is queued."""

from __future__ import annotations

from typing import Any

from django import forms
from pydantic import ValidationError

from planning import selectors
from planning.params import (
    MARKETPLACES,
    PRESETS,
    STRATEGIES,
    PlanParameters,
    field_errors,
    plan_parameters,
)


class PlanForm(forms.Form):
    preset = forms.ChoiceField(
        choices=[("", "— none —"), *((p, p) for p in PRESETS)], required=False,
        help_text="Fills what you leave blank below.",
    )  # fmt: skip
    category = forms.ChoiceField(choices=(), help_text="Categories with sales history.")
    season_start = forms.DateField(required=False, help_text="YYYY-MM-DD; blank: next Monday.",
                                   widget=forms.DateInput(attrs={"type": "date"}))  # fmt: skip
    season_end = forms.DateField(required=False, help_text="Blank: start + horizon.",
                                 widget=forms.DateInput(attrs={"type": "date"}))  # fmt: skip
    horizon_weeks = forms.IntegerField(required=False, help_text="Weeks to forecast, 1-52.")
    strategy = forms.ChoiceField(choices=[("", "— preset's —"), *((s, s) for s in STRATEGIES)],
                                 required=False, help_text="Replenishment during the season.")  # fmt: skip
    dc_holdback = forms.FloatField(required=False, help_text="Share kept at the DC, 0-1.")
    safety_multiplier = forms.FloatField(required=False, help_text="Blank: the strategy's.")
    pack_size = forms.IntegerField(required=False, help_text="Quantities round up to packs.")
    marketplaces = forms.MultipleChoiceField(
        choices=[(m, m) for m in MARKETPLACES], required=False,
        widget=forms.CheckboxSelectMultiple, help_text="Listings to update with the quantities.",
    )  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["category"].choices = [(c, c) for c in selectors.categories()]  # type: ignore[attr-defined]
        self.parameters: PlanParameters | None = None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        overrides = {k: v for k, v in data.items() if k != "preset" and v not in (None, "", [])}
        try:
            self.parameters = plan_parameters(
                preset=data.get("preset") or None, overrides=overrides
            )
        except ValidationError as exc:
            for error in field_errors(exc):
                field = error["field"].split(".")[0] if error["field"] else None
                self.add_error(field if field in self.fields else None, error["message"])
        return data
