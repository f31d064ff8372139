"""The documentation in docs/ stays true to the code: every command type and field, every error
code, every event class, every read-model table and column is documented; `ledger run --help`
names the command types; the README points to docs/, not to ../shared."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner
from eventsourcing.domain import Aggregate

import ledger.domain.account
import ledger.domain.reference
from ledger import errors
from ledger.application.commands import COMMANDS
from ledger.cli import main
from projections import tables

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The text after `heading` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n")
    rest = text[start + len(heading) + 1:]
    stop = re.search(rf"^#{{1,{len(level)}}} ", rest, flags=re.MULTILINE)
    return rest[:stop.start()] if stop else rest


def test_every_command_type_and_field_is_in_the_contract() -> None:
    contract = read("contract.md")
    assert len(COMMANDS) >= 20
    for name, model in COMMANDS.items():
        assert f"| `{name}` |" in contract, f"{name} missing from the command-type table"
        fields = section(contract, f"#### `{name}`")
        for field_name, field in model.model_fields.items():
            if field_name == "type":
                continue
            key = field.alias or field_name
            assert f"| `{key}` |" in fields, f"{name}.{key} missing from docs/contract.md"


def test_every_error_code_is_in_the_contract() -> None:
    contract = read("contract.md")
    codes = {cls.code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.LedgerError)}
    assert {"invalid_input", "insufficient_margin", "id_conflict"} <= codes
    for code in codes:
        assert f"| `{code}` |" in contract, code
    for status in ("| 0 |", "| 1 |", "| 2 |", "| 3 |"):
        assert status in contract


def event_classes() -> set[str]:
    found = set()
    for module in (ledger.domain.account, ledger.domain.reference):
        for aggregate in vars(module).values():
            if not (isinstance(aggregate, type) and issubclass(aggregate, Aggregate)):
                continue
            for value in vars(aggregate).values():
                if isinstance(value, type) and issubclass(value, Aggregate.Event):
                    found.add(value.__name__)
    return found


def test_every_event_class_is_in_the_catalogue() -> None:
    catalogue = read("events.md")
    names = event_classes()
    assert {"Deposited", "FundingSettled", "MarkPriceSet", "PortfolioMarginListed"} <= names
    missing = sorted(name for name in names if f"`{name}`" not in catalogue)
    assert not missing, f"not in docs/events.md: {missing}"


def test_every_read_model_table_and_column_is_documented() -> None:
    page = read("read-models.md")
    for table in tables.metadata.sorted_tables:
        heading = f"## `{table.name}`"
        assert heading in page, f"{table.name} missing from docs/read-models.md"
        body = page[page.index(heading):]
        body = body[:body.find("\n## ", 1)] if "\n## " in body[1:] else body
        for column in table.columns:
            assert f"`{column.name}`" in body, f"{table.name}.{column.name} undocumented"


def test_run_help_names_every_command_type_and_the_contract() -> None:
    result = CliRunner().invoke(main, ["run", "--help"])
    assert result.exit_code == 0
    words = set(re.findall(r"[a-z_]+", result.output))
    assert not set(COMMANDS) - words, set(COMMANDS) - words
    assert "docs/contract.md" in result.output


def test_readme_points_to_docs_not_to_shared() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "../shared" not in readme
    for page in ("contract.md", "events.md", "read-models.md", "stream.md", "configuration.md"):
        assert f"docs/{page}" in readme


def test_the_docs_index_lists_every_page() -> None:
    index = read("README.md")
    for page in sorted(DOCS.glob("*.md")):
        if page.name != "README.md":
            assert f"({page.name})" in index, f"docs/README.md does not list {page.name}"
