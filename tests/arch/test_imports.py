"""The shape of the house: every module imports on its own, there is no import circle in `gateway`, and the arrows
point one way (entry points -> pipeline -> site/features -> core), so a new circle or a wrong-way import fails CI."""

from __future__ import annotations

import subprocess
import sys

from .imports import cycles, import_graph, modules

ENTRY = {"gateway.cli", "gateway.cli_run", "gateway.demo", "gateway.hj212.cli", "gateway.grafana_push"}


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    names = sorted(modules())
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_gateway_has_no_import_circle() -> None:
    assert cycles(import_graph()) == []


def test_core_imports_nothing_of_the_gateway_but_core() -> None:
    wrong = {m: sorted(d for d in deps if top(d) != "core") for m, deps in import_graph().items()
             if top(m) == "core" and any(top(d) != "core" for d in deps)}
    assert wrong == {}


def test_processing_is_pure() -> None:
    """Quality, CEMS, windows and units need only the core vocabulary (and the record registry, for the codec of
    the aggregate records they own): no asyncio, no store, sinks, alarms or pipeline."""
    allowed = {"core", "processing"}
    graph = import_graph()
    wrong = {m: sorted(d for d in deps if top(d) not in allowed and d != "gateway.store.records" and d != "gateway"
                       and d != "gateway.store")
             for m, deps in graph.items() if top(m) == "processing"}
    assert {m: d for m, d in wrong.items() if d} == {}
    for name, path in modules().items():
        if top(name) == "processing":
            assert "import asyncio" not in path.read_text(), f"{name} runs asyncio"


def test_no_feature_imports_the_assembly_the_pipeline_or_an_entry_point() -> None:
    """Features may take a Site (gateway.site.model, data only) but never the assembly code, the pipeline or the
    CLI; the store imports no domain module."""
    graph = import_graph()
    features = {"acquisition", "processing", "alarms", "hj212", "audit", "store", "sinks", "core", "health", "profile",
                "config", "yamlio", "logsetup", "systemd_notify", "display", "localservers", "cockpit"}
    wrong: dict[str, list[str]] = {}
    for m, deps in graph.items():
        if top(m) in features and m not in ENTRY:
            bad = [d for d in deps if d in ENTRY or top(d) == "pipeline"
                   or (top(d) == "site" and d not in ("gateway.site", "gateway.site.model"))]
            if top(m) == "store":
                bad += [d for d in deps if top(d) not in ("store", "core", "")]
            if bad:
                wrong[m] = sorted(bad)
    assert wrong == {}
