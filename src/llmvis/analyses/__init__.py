"""Views: one pure function per chart, registered by name (see registry.py).

Importing this package imports every view module so that each registers itself in `VIEWS`.
"""

from llmvis.analyses import (  # noqa: F401  (imported for their @register side effects)
    activations,
    attention,
    attribution,
    contributions,
    embedding,
    experts,
    flow,
    heads,
    layers,
    tokens,
    uncertainty,
)
from llmvis.analyses.registry import (
    VIEWS,
    UnknownViewError,
    View,
    ViewContext,
    ViewParamError,
    compute,
)

__all__ = ["VIEWS", "UnknownViewError", "View", "ViewContext", "ViewParamError", "compute"]
