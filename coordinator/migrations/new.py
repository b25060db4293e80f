"""Create a new Alembic revision from the difference between the models and a fresh database:
``python -m coordinator.migrations.new "what changed"``. Review the generated file before committing."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config

from coordinator.db import MIGRATIONS_DIR, Database


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'schema.db'}"
        Database(url).migrate()  # the schema as the existing revisions leave it
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection_url"] = url
        numbered = sorted(
            p.name[:4] for p in (MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
        )
        rev_id = f"{int(numbered[-1]) + 1:04d}" if numbered else "0001"
        command.revision(cfg, message=argv[0], autogenerate=True, rev_id=rev_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
