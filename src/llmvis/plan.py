"""An intervention as data (validated alone; interventions.py checks it against a model and a
run and applies it). Kept apart so that a run's request can carry its interventions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

Site = Literal["residual", "attn_out", "mlp_out", "head", "neuron", "attention_edges"]
Operation = Literal["zero", "mean", "scale", "patch", "add"]


class Intervention(BaseModel):
    site: Site
    layer: int = Field(ge=0, description="decoder layer (residual: hidden state 0..L, L = the last layer's output)")
    head: int | None = Field(default=None, ge=0, description="site 'head': the head")
    neuron: int | None = Field(default=None, ge=0, description="site 'neuron': the neuron")
    positions: list[int] | None = Field(
        default=None, description="positions it touches (default: all); attention_edges: the query positions"
    )
    keys: list[int] | None = Field(default=None, description="site 'attention_edges': the key positions cut off")
    op: Operation = Field(default="zero", description="zero, mean over the run, scale, patch, add")
    factor: float | None = Field(default=None, description="op 'scale': the factor; op 'add': the vector's coefficient")
    source_run: str | None = Field(default=None, description="op 'patch': the run whose values replace these")
    vector: list[float] | None = Field(default=None, description="op 'add': what is added (the site's width)")

    @model_validator(mode="after")
    def _complete(self) -> Intervention:
        needs = {"head": "head", "neuron": "neuron"}.get(self.site)
        if needs and getattr(self, needs) is None:
            raise ValueError(f"site {self.site!r} needs `{needs}`")
        if self.site == "attention_edges" and (not self.keys or self.op != "zero"):
            raise ValueError("site 'attention_edges' needs `keys` (and knocks them out: op 'zero')")
        if self.op == "scale" and self.factor is None:
            raise ValueError("op 'scale' needs `factor`")
        if self.op == "patch" and not self.source_run:
            raise ValueError("op 'patch' needs `source_run`")
        if self.op == "add" and not self.vector:
            raise ValueError("op 'add' needs `vector`")
        return self
