"""Part 1's figures: each value the pages showed, matched to the database timestamp of its state."""

from __future__ import annotations

import contextlib
import re
from datetime import datetime
from typing import Any

from bench import harness
from bench.live_admin.constants import TARGET_P95_MS

LABEL = re.compile(r"(\d+)% \((\d+)/(\d+)\)")


def ms_of(value: datetime | None) -> float | None:
    return value.timestamp() * 1000 if value else None


def iso_ms(text: str | None) -> float | None:
    if not text:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text).timestamp() * 1000
    return None


def analyse(pages: dict[str, dict], rows: list[tuple]) -> dict[str, Any]:
    """Per DOM update and per committed change, from the pages' records and the job rows."""
    started = {pk: ms_of(s) for pk, _, s, _ in rows}
    completed = {pk: ms_of(c) for pk, _, _, c in rows}
    completions = sorted(c for c in completed.values() if c is not None)
    series: dict[str, dict[str, list[float]]] = {}
    samples: list[dict[str, Any]] = []

    def add(source: str, figure: str, value: float | None) -> None:
        if value is not None:
            series.setdefault(figure, {}).setdefault(source, []).append(value)

    shown_jobs: dict[int, list[tuple[float, str]]] = {}
    shown_done: list[tuple[float, int]] = []
    messages: dict[str, dict[str, int]] = {}
    stamps: dict[str, int] = {}  # samples per source measured from the commit / the state
    for name, record in pages.items():
        ws = record.get("ws", [])
        counts: dict[str, int] = {}
        for m in ws:
            counts[m["type"]] = counts.get(m["type"], 0) + 1
        messages[name] = counts
        for dom in record.get("dom", []):
            key, value = dom["key"], dom["value"].strip()
            msg = ws[dom["ws"]] if 0 <= dom["ws"] < len(ws) else None
            db_ms = None
            if name == "job_list" and key.startswith("job:"):
                pk = int(key.split(":")[1])
                shown_jobs.setdefault(pk, []).append((dom["t"], value))
                source = f"job_{value}"
                db_ms = {"running": started.get(pk), "completed": completed.get(pk)}.get(value)
                if value == "queued":
                    add("job_queued", "event_to_dom_ms", event_delay(dom, msg))
            elif name == "batch_page" and key.startswith("label:"):
                source = "batch_progress"
                match = LABEL.search(value)
                done = int(match.group(2)) if match else 0
                if done <= 0:
                    continue
                shown_done.append((dom["t"], done))
                db_ms = completions[done - 1] if done <= len(completions) else None
            else:
                continue
            if db_ms is None:
                continue
            # The commit as its worker saw it (the message's ``committed``), when the message
            # that changed the DOM is this very state; else the state's own timestamp (earlier
            # than its commit: the figure can only grow).
            committed = iso_ms(msg.get("c")) if msg and shows(msg, key, value) else None
            sample = {
                "source": source,
                "shown": f"{key} = {value}",
                "at_ms": dom["t"],
                "commit_to_dom_ms": dom["t"] - (db_ms if committed is None else committed),
                "state_to_dom_ms": dom["t"] - db_ms,
                "state_to_commit_ms": None if committed is None else committed - db_ms,
                "event_to_dom_ms": event_delay(dom, msg),
                "commit_to_ws_ms": (
                    msg["t"] - (db_ms if committed is None else committed) if msg else None
                ),
                "ws_to_dom_ms": dom["p"] - msg["p"] if msg else None,
                "dom_to_next_frame_ms": dom["frame"] - dom["p"] if dom.get("frame") else None,
                "message": msg["type"] if msg else None,
            }
            samples.append(sample)
            basis = source if committed is not None else f"{source} (state timestamp)"
            stamps[basis] = stamps.get(basis, 0) + 1
            for figure, value_ms in sample.items():
                if figure.endswith("_ms") and figure != "at_ms":
                    add(source, figure, value_ms)

    # Per committed change: when did the page first show it (or a later state)?
    order = {"queued": 0, "running": 1, "completed": 2}
    unseen = 0
    for pk in started:
        seen = sorted(shown_jobs.get(pk, []))
        for state, db_ms in (("running", started[pk]), ("completed", completed[pk])):
            if db_ms is None:
                continue
            first = next((t for t, v in seen if order.get(v, -1) >= order[state]), None)
            if first is None:
                unseen += 1
            else:
                add(f"job_{state}", "state_to_first_shown_ms", first - db_ms)
    shown_done.sort()
    for k, db_ms in enumerate(completions, start=1):
        first = next((t for t, d in shown_done if d >= k), None)
        if first is None:
            unseen += 1
        else:
            add("batch_progress", "state_to_first_shown_ms", first - db_ms)

    out: dict[str, Any] = {}
    for figure, by_source in series.items():
        out[figure] = {source: harness.distribution(values) for source, values in by_source.items()}
        every = [v for source, values in by_source.items() if source != "job_queued"
                 for v in values]  # fmt: skip
        if every:
            out[figure]["all"] = harness.distribution(every)
    for figure in ("commit_to_dom_ms", "state_to_first_shown_ms"):
        out.setdefault(figure, {}).setdefault("all", {"count": 0})
    origin = min((x["at_ms"] for x in samples), default=0)
    worst = sorted(samples, key=lambda x: -x["commit_to_dom_ms"])[:10]
    out["commit_stamps"] = stamps
    out["slowest_updates"] = [
        {k: (round(v, 1) if isinstance(v, float) else v) for k, v in x.items() if k != "at_ms"}
        | {"s_after_first_update": round((x["at_ms"] - origin) / 1000, 2)}
        for x in worst
    ]
    out["commit_to_ws_ms_by_type"] = commit_to_ws_by_type(pages)
    out["messages_received"] = messages
    out["changes_never_shown"] = unseen
    out["batch_values_shown"] = len(shown_done)
    out["batch_completions"] = len(completions)
    all_dom = out["commit_to_dom_ms"]["all"]
    out["target_p95_ms"] = TARGET_P95_MS
    out["target_met"] = bool(all_dom.get("count") and all_dom["p95"] <= TARGET_P95_MS)
    return out


def commit_to_ws_by_type(pages: dict[str, dict]) -> dict[str, Any]:
    """Every message a page received (shown or not): its ``committed`` (the worker saw its
    transaction commit; ``timestamp``, the emit inside it, for a message without one) to its
    arrival in the page, per type. The publisher's queue, the channel layer and the ASGI
    server are in between."""
    by_type: dict[str, list[float]] = {}
    for record in pages.values():
        for m in record.get("ws", []):
            stamp = iso_ms(m.get("c") or m.get("ts"))
            if stamp is not None and m.get("type") != "snapshot":
                by_type.setdefault(m["type"], []).append(m["t"] - stamp)
    return {kind: harness.distribution(values) for kind, values in sorted(by_type.items())}


def shows(msg: dict, key: str, value: str) -> bool:
    """Whether ``msg`` is the state a DOM value shows (a job's status, a batch's done count)."""
    if key.startswith("job:"):
        return (
            msg.get("type") == "job_status"
            and msg.get("job") == int(key.split(":")[1])
            and msg.get("status") == value
        )
    match = LABEL.search(value)
    return (
        msg.get("type") in ("batch_progress", "complete")
        and bool(match)
        and msg.get("done") == int(match.group(2))
    )


def layer_split(pages: dict[str, dict], taps: list[dict], probes: list[dict]) -> dict[str, Any]:
    """Per message type: emit (``timestamp``, inside the transaction) → commit (``committed``)
    → the layer tap's arrival → the socket probe's arrival → the page's (matched on type,
    timestamp, job and status; the first page that got it)."""

    def key_of(m: dict) -> tuple:
        return (m.get("type"), m.get("ts"), m.get("job"), m.get("status"))

    at_tap: dict[tuple, float] = {}
    for r in taps:
        at_tap.setdefault(key_of(r), r["t"])
    at_probe: dict[tuple, float] = {}
    for r in probes:
        at_probe.setdefault(key_of(r), r["t"])
    first_page: dict[tuple, float] = {}
    for record in pages.values():
        for m in record.get("ws", []):
            key = key_of(m)
            if key in at_tap:
                first_page[key] = min(first_page.get(key, m["t"]), m["t"])
    legs: dict[str, dict[str, list[float]]] = {}

    def add(leg: str, kind: str, value: float) -> None:
        legs.setdefault(leg, {}).setdefault(kind, []).append(value)
        legs[leg].setdefault("all", []).append(value)

    committed = {key_of(r): iso_ms(r.get("c")) for r in taps}
    for key, t_tap in at_tap.items():
        stamp, commit = iso_ms(key[1]), committed.get(key)
        if stamp is not None and commit is not None:
            add("emit_to_commit_ms", key[0], commit - stamp)
        if commit is not None:
            add("commit_to_layer_ms", key[0], t_tap - commit)
        if key in first_page:
            add("layer_to_page_ms", key[0], first_page[key] - t_tap)
        if key in at_probe:
            add("layer_to_socket_ms", key[0], at_probe[key] - t_tap)
            if key in first_page:
                add("socket_to_page_ms", key[0], first_page[key] - at_probe[key])
    return {
        "basis": "a listener process on the same channel layer, in the watched groups; a "
        "WebSocket client process on the same uvicorn, subscribed like the pages",
        "tap_messages": len(taps),
        "probe_messages": len(probes),
        "matched_in_pages": len(first_page),
    } | {
        leg: {k: harness.distribution(v) for k, v in sorted(by_kind.items())}
        for leg, by_kind in legs.items()
    }


def event_delay(dom: dict, msg: dict | None) -> float | None:
    stamp = iso_ms(msg.get("ts")) if msg else None
    return dom["t"] - stamp if stamp is not None else None
