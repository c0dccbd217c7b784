"""An import file's rows: read a CSV or JSON Lines file, check each row against the
product's rules and normalise it (the ``validate_rows`` step of ``uploads.importing``).

Errors name the field and say why (``price: must be more than 0``); a file that cannot be
read as a whole (no header columns, not UTF-8) raises ``PermanentStepError``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from orchestration.steps import PermanentStepError
from uploads.models import Upload

FIELDS = ("sku", "title", "description", "price", "currency", "quantity", "brand", "size",
          "condition", "category", "images")  # fmt: skip
REQUIRED = ("sku", "title", "price")
CONDITIONS = ("new", "like_new", "very_good", "good", "satisfactory")
_LIMITS = {"sku": 64, "title": 140, "description": 20_000, "brand": 80, "size": 40,
           "category": 120}  # fmt: skip
_CURRENCY = re.compile(r"[A-Z]{3}")
_URL = re.compile(r"https?://\S{1,1990}")


# --- one row ------------------------------------------------------------------------


def _text(raw: Mapping[str, Any], name: str, errors: list[str], *, required: bool = False) -> str:
    value = raw.get(name)
    if value is None:
        value = ""
    if not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        else:
            errors.append(f"{name}: must be text")
            return ""
    value = value.strip()
    if required and not value:
        errors.append(f"{name}: required")
    elif len(value) > _LIMITS[name]:
        errors.append(f"{name}: at most {_LIMITS[name]} characters (has {len(value)})")
    elif name != "description" and any(ord(c) < 32 for c in value):
        errors.append(f"{name}: control characters")
    return value


def clean_row(raw: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """The row as the product table stores it, or None and the reasons (field: message)."""
    errors: list[str] = []
    row: dict[str, Any] = {name: _text(raw, name, errors, required=name in REQUIRED)
                           for name in ("sku", "title", "description", "brand", "size",
                                        "category")}  # fmt: skip
    price = raw.get("price")
    try:
        if isinstance(price, bool) or price is None or str(price).strip() == "":
            raise InvalidOperation
        amount = Decimal(str(price).strip())
        if not amount.is_finite() or amount <= 0:
            errors.append("price: must be more than 0")
        elif amount != amount.quantize(Decimal("0.01")) or amount >= Decimal("100000000"):
            errors.append("price: at most 8 digits before the point and 2 after")
        else:
            row["price"] = str(amount.quantize(Decimal("0.01")))
    except (InvalidOperation, ValueError):
        errors.append(f"price: not a number ({str(price)[:40]!r})")
    currency = str(raw.get("currency") or "EUR").strip().upper()
    if not _CURRENCY.fullmatch(currency):
        errors.append("currency: three letters (ISO 4217)")
    row["currency"] = currency
    quantity = raw.get("quantity")
    if quantity is None or (isinstance(quantity, str) and not quantity.strip()):
        row["quantity"] = 1
    else:
        try:
            if isinstance(quantity, (bool, float)):
                raise ValueError
            row["quantity"] = int(str(quantity).strip())
            if not 0 <= row["quantity"] <= 2_147_483_647:
                errors.append("quantity: 0 to 2147483647")
        except ValueError:
            errors.append(f"quantity: not a whole number ({str(quantity)[:40]!r})")
    condition = str(raw.get("condition") or "good").strip().lower()
    if condition not in CONDITIONS:
        errors.append(f"condition: one of {', '.join(CONDITIONS)}")
    row["condition"] = condition
    images = raw.get("images") or []
    if isinstance(images, str):  # CSV: URLs separated by | or spaces
        images = [u for u in re.split(r"[|\s]+", images) if u]
    if not isinstance(images, list) or not all(isinstance(u, str) for u in images):
        errors.append("images: a list of URLs")
        images = []
    if len(images) > 20:
        errors.append("images: at most 20")
    bad = [u for u in images if not _URL.fullmatch(u)]
    if bad:
        errors.append(f"images: not an http(s) URL: {bad[0][:60]!r}")
    row["images"] = images
    return (None, errors) if errors else (row, [])


# --- reading a file -----------------------------------------------------------------


def read_rows(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, raw row or None, error) for each row of the file."""
    with open(path, "rb") as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        if fmt == Upload.Format.JSONL:
            yield from _jsonl_rows(text)
        else:
            yield from _csv_rows(text)


def _jsonl_rows(text: io.TextIOWrapper) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    line = 0
    while True:
        try:
            raw = text.readline()
        except UnicodeDecodeError:
            raise PermanentStepError(f"line {line + 1} is not UTF-8 text") from None
        if not raw:
            return
        line += 1
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield line, None, f"not valid JSON ({exc.msg})"
            continue
        if not isinstance(value, dict):
            yield line, None, "not a JSON object"
            continue
        yield line, value, ""


def _csv_rows(text: io.TextIOWrapper) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    reader = csv.reader(text)
    try:
        header = next(reader, None)
        if header is None:
            raise PermanentStepError("the file is empty")
        columns = [c.strip().lower() for c in header]
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise PermanentStepError(
                f"the CSV header (line 1) lacks the column(s) {', '.join(missing)}; "
                f"known columns: {', '.join(FIELDS)}"
            )
        while True:
            start = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, None, f"unreadable CSV ({exc})"
                continue
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(columns):
                yield start, None, f"{len(values)} fields, the header has {len(columns)}"
                continue
            yield start, {c: v for c, v in zip(columns, values, strict=True) if c in FIELDS}, ""
    except UnicodeDecodeError:
        raise PermanentStepError(f"line {reader.line_num + 1} is not UTF-8 text") from None
