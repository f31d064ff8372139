"""Print the API's OpenAPI document (`python -m ledger.api.openapi > docs/openapi.json`).

The document does not depend on the store, but the app is built over one: a throwaway SQLite
file in a temporary directory."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def main() -> None:
    from ledger.api.app import create_app, openapi_document

    with tempfile.TemporaryDirectory() as directory:
        app = create_app(f"sqlite:///{Path(directory) / 'openapi.db'}")
        sys.stdout.write(openapi_document(app))
        app.state.store.close()


if __name__ == "__main__":
    main()
