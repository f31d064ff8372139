"""Fixtures of the CI-sized crash trials (issue 10): one feed, one reference per backend.

Sizes are small on purpose (the whole directory runs in about three minutes on two shared
cores); `scripts/crash-trials` runs the same trials by the hundred.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import feedgen
from .harness import postgres_available, workdir
from .trials import Reference, make_reference

SEED = int(os.environ.get("CRASH_SEED", "10"))
ACCOUNTS, HOURS = 10, 6


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.crash)


@pytest.fixture(scope="session")
def crash_dir() -> Iterator[Path]:
    with workdir("crash10-ci-") as path:
        yield path


@pytest.fixture(scope="session")
def crash_feed(crash_dir: Path) -> Path:
    return feedgen.write(crash_dir / "feed.jsonl", feedgen.generate(SEED, ACCOUNTS, HOURS))


@pytest.fixture(scope="session")
def references(crash_feed: Path, crash_dir: Path) -> dict[str, Reference]:
    return {}


def need_backend(backend: str) -> None:
    if backend == "postgres" and (reason := postgres_available()):
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required under CI=true: {reason}")
        pytest.skip(reason)


@pytest.fixture
def reference(request: pytest.FixtureRequest, references: dict[str, Reference],
              crash_feed: Path, crash_dir: Path) -> Reference:
    backend: str = request.param
    need_backend(backend)
    if backend not in references:
        references[backend] = make_reference(crash_feed, backend, crash_dir)
    return references[backend]


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    return random.Random(f"{SEED}:{request.node.nodeid}")
