"""`python -m llmvis.server.openapi OUT.json`: write the API's OpenAPI schema, loading no model.

The web build runs this and feeds the file to openapi-typescript, so the browser's types
are generated from the same pydantic models the server validates with.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from llmvis.config import Settings
from llmvis.server.app import create_app


def schema() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp)))
        try:
            return app.openapi()
        finally:
            app.state.engine.close()
            app.state.store.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m llmvis.server.openapi OUT.json", file=sys.stderr)
        return 2
    out = Path(args[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
