"""A seeded mutator of feed lines (pure Python, deterministic from its `random.Random`).

`mutate(line, rng)` returns one bad, odd or extreme variant of a valid feed line: numbers
pushed to extremes (1e30 as text and as a JSON number, 34 digits, -0, NaN, Infinity, tiny
fractions), fields removed, duplicated, added or swapped in type, unicode junk in account
names and ids, times far in the future or past or not RFC 3339 at all, another `type`,
truncated lines, nested junk, non-UTF-8 bytes. Some mutations stay valid (a big but legal
quantity, an account name with emoji): the fuzz test does not predict the outcome, it checks
that every outcome is a clean one (never exit 3, never a Traceback) and that what was accepted
is exactly what a clean replay of the accepted lines gives.

`fuzz_feed(lines, rng, count)` interleaves `count` mutated lines with a valid feed, each right
after the line it was made from, and returns (mixed lines, 1-based numbers of mutated lines).
"""

from __future__ import annotations

import json
import random
from typing import Any

NUMBER_FIELDS = ("amount", "qty", "price", "rate", "leverage", "fee", "contract_size",
                 "precision", "taker_fee_rate", "maker_fee_rate", "funding_interval_hours")
NAME_FIELDS = ("account", "id", "from", "to", "symbol", "asset", "base", "settle",
               "with_asset")

EXTREME_TEXT = [
    "1e30", "1E-30", "-0", "0", "-0.0", "0.0", "+5", " 5", "5 ", "5.", ".5", "1_000", "0x10",
    "NaN", "nan", "Infinity", "-Infinity", "inf", "", "١٢٣", "５",
    "1" + "0" * 30, "9" * 34, "9" * 35, "0." + "0" * 33 + "1", "1." + "1" * 40,
    "-" + "9" * 34, "123456789012345678901234.5678901234", "0.00000001", "0.000000001",
    "99999999999999999999999999999999.99", "-1", "-0.00000001", "1e-8", "1/3",
]
EXTREME_RAW = ["1e30", "1E+30", "-0", "0", "1" + "0" * 40, "NaN", "Infinity", "-Infinity",
               "1.5e-9", "0.1", "-1", "1" * 34, "true", "null", "[]", "{}", "[1,2]",
               '"' + "9" * 34 + '"']
JUNK_NAMES = [
    "", " ", "\u0000", "\u202e" + "evil", "ali\u0301ce", "😀" * 3, "a" * 5000, "\t\n",
    "../etc/passwd", "alice'; DROP TABLE ledger_events;--", "\\ud800", "名前", "Ａlice",
    "null", "ACCT0001", "acct0001 ", "\ufeffacct0001", "\u2028", "%s%n", "{}", "\x7f",
]
TIMES = [
    "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z",
    "2025-03-03T00:00:00+14:00", "2025-03-03T00:00:00.123456789Z", "2025-03-03T23:59:60Z",
    "2025-02-30T00:00:00Z", "2025-03-03t00:00:00z", "2025-03-03T00:00:00", "2025-03-03",
    "yesterday", "", "2025-03-03T00:00:00-00:00", "+275760-09-13T00:00:00Z",
    "2100-01-01T00:00:00Z", "2025-03-02T23:59:59.999999Z", "2025-13-01T00:00:00Z",
]
TYPES = ["asset", "instrument", "mark_price", "index_price", "funding_rate", "open_account",
         "change_mode", "deposit", "withdraw", "transfer", "fill", "open_orders",
         "adjust_isolated_margin", "set_auto_add_margin", "set_leverage", "repay",
         "settle_funding", "charge_interest", "check_margin", "teleport", "", "FILL", None]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _raw_replace(data: dict[str, Any], key: str, raw: str) -> str:
    """The object with `key`'s value replaced by raw JSON text (e.g. a bare 1e30)."""
    marker = "\u0001MARK\u0001"
    data = dict(data)
    data[key] = marker
    return _dumps(data).replace(_dumps(marker), raw)


LEGAL_EXTREMES = {"1" + "0" * 30, "9" * 34, "-" + "9" * 34, "123456789012345678901234.5678901234",
                  "99999999999999999999999999999999.99", "1" * 34, '"' + "9" * 34 + '"',
                  "1" + "0" * 40}


def mutate(line: str, rng: random.Random, tame: bool = False) -> str:
    """One variant of `line`. `tame`: no legal-but-extreme magnitudes (on e8f5029 an accepted
    34-digit price poisons every later line with exit 3, hiding whatever else is there)."""
    if tame:
        for _ in range(20):
            result = mutate(line, rng)
            if not any(x in result for x in LEGAL_EXTREMES) and '"1000000000000000' not in result:
                return result
        return line[: len(line) // 2]
    try:
        data = json.loads(line)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return line[: rng.randrange(len(line) + 1)] + rng.choice(["", "}", "\u00ff", "\x00"])
    kind = rng.randrange(16)
    keys = [k for k in data if k != "type"] or ["type"]
    numbers = [k for k in data if k in NUMBER_FIELDS]
    names = [k for k in data if k in NAME_FIELDS]
    if kind == 0 and numbers:
        data[rng.choice(numbers)] = rng.choice(EXTREME_TEXT)
    elif kind == 1 and numbers:
        return _raw_replace(data, rng.choice(numbers), rng.choice(EXTREME_RAW))
    elif kind == 2:
        data.pop(rng.choice(keys), None)
    elif kind == 3:
        key = rng.choice(keys)
        text = _dumps(data)
        return text[:-1] + "," + _dumps(key) + ":" + _dumps(data.get(key)) + "}"
    elif kind == 4:
        data[rng.choice(["extra", "Amount", "ID", "__proto__", "type2"])] = rng.choice(
            ["x", 1, None, [], {}])
    elif kind == 5:
        key = rng.choice(keys)
        value = data.get(key)
        data[key] = rng.choice([[value], {"v": value}, 7, True, None, str(value) * 2,
                                -1.5])
    elif kind == 6 and names:
        data[rng.choice(names)] = rng.choice(JUNK_NAMES)
    elif kind == 7:
        data["at"] = rng.choice(TIMES)
    elif kind == 8:
        data["type"] = rng.choice(TYPES)
    elif kind == 9:
        text = _dumps(data)
        return text[: rng.randrange(1, len(text))]
    elif kind == 10:
        return rng.choice(["[" * 5000 + "]" * 5000, "{" * 3000, "null", "[]", "42", '"x"',
                           "{}", '{"type":"deposit"}', "\ufeff" + line, line + line,
                           line.replace('"', "'"), "\x00" + line, line + " trailing"])
    elif kind == 11:
        # valid-looking extreme magnitudes (legal decimals): the 1e30 price case
        for key in numbers or ["price"]:
            if rng.random() < 0.7:
                data[key] = rng.choice(["1" + "0" * 30, "0.00000001", "9" * 20,
                                        "1" + "0" * 15, "123456789012.12345678"])
    elif kind == 12:
        text = _dumps(data)
        cut = rng.randrange(len(text))
        return text[:cut] + rng.choice(["\udcff", "\udcc3(", "\u00e9"]) + text[cut:]
    elif kind == 13 and names:
        # a fresh, valid name: unknown accounts, symbols, assets; new ids (applied twice?)
        key = rng.choice(names)
        data[key] = f"{data[key]}-{rng.randrange(1000)}"
    elif kind == 14:
        data["at"] = data.get("at", "")[:-1] + rng.choice([".5Z", "+00:00", "Z", " Z"])
    else:
        # several at once
        for _ in range(3):
            line = mutate(_dumps(data), rng)
        return line
    return _dumps(data)


def fuzz_feed(lines: list[str], rng: random.Random, count: int, tame: bool = False
              ) -> tuple[list[str], set[int]]:
    after: dict[int, list[str]] = {}
    for _ in range(count):
        index = rng.randrange(len(lines))
        after.setdefault(index, []).append(mutate(lines[index], rng, tame))
    mixed: list[str] = []
    mutated: set[int] = set()
    for index, line in enumerate(lines):
        mixed.append(line)
        for bad in after.get(index, []):
            mixed.append(bad.replace("\n", " ").replace("\r", " "))
            mutated.add(len(mixed))
    return mixed, mutated
