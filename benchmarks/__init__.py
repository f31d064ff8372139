"""The benchmarks behind `ledger bench`: ingest, state queries, portfolio margin, funding and the
projections' catch-up, each measured in-process on scratch stores (figures for the notes, never
timed tests)."""
