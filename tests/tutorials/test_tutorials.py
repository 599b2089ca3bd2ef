"""The tutorial notebooks: each runs top to bottom in smoke mode (``SMOKE_TEST=1``), and each
stored notebook is the full-budget execution of its source in ``tutorials/src``.

The notebooks run in a kernel on this interpreter (``tutorials/build.py`` writes a temporary
kernelspec pointing at ``sys.executable``), in a temporary working directory.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("tutorials_build", REPO / "tutorials" / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

NOTEBOOKS = (
    "01_getting_started",
    "02_ax",
    "03_large_histories",
    "04_hyperparameter_tuning",
    "05_custom_prior",
)
# Packages a notebook needs beyond the dev extra's notebook tools.
REQUIRES = {"02_ax": ("ax",), "04_hyperparameter_tuning": ("ax", "sklearn")}
# Figures each notebook draws (a missing one means a plotting cell silently drew nothing).
FIGURES = {
    "01_getting_started": 2,
    "02_ax": 2,
    "03_large_histories": 2,
    "04_hyperparameter_tuning": 1,
    "05_custom_prior": 5,
}
# About four times the budget of a smoke run (90 s on the shared 2-core machine before
# session 23's distance adaptation, which adds a few seconds to every model of 32 points or
# more, and 03_large_histories took 431 s with two other jobs on the machine): a notebook that
# takes longer than this has lost its SMOKE_TEST switch somewhere.
SMOKE_LIMIT_S = 600


def _source(name: str) -> Path:
    return build.SOURCES / f"{name}.py"


def _outputs(nb, output_type: str | None = None) -> list:
    return [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if output_type is None or out.output_type == output_type
    ]


def _images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for out in _outputs(nb))


def _stdout(nb) -> str:
    return "".join(o.text for o in _outputs(nb, "stream") if o.name == "stdout")


def test_every_source_is_a_listed_notebook() -> None:
    assert [s.stem for s in build.sources()] == list(NOTEBOOKS)


def test_percent_format_parsing() -> None:
    text = "# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n\n# %%\ny = 2\n"
    assert build.parse_cells(text) == [
        ("markdown", "# Title\n\ntext"),
        ("code", "x = 1"),
        ("code", "y = 2"),
    ]
    with pytest.raises(ValueError, match="markdown cell line"):
        build.parse_cells("# %% [markdown]\nnot a comment\n")


def test_text_updates_keep_outputs_and_refuse_code_changes(tmp_path: Path) -> None:
    source = tmp_path / "src.py"
    source.write_text("# %% [markdown]\n# old text\n\n# %%\nprint(1)\n")
    stored = build.build_notebook(source)
    stored.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    target = tmp_path / "nb.ipynb"
    nbformat.write(stored, target)
    source.write_text("# %% [markdown]\n# new text\n\n# %%\nprint(1)\n")
    assert build.update_markdown(target, build.build_notebook(source))
    updated = nbformat.read(target, as_version=4)
    assert updated.cells[0].source == "new text" and updated.cells[1].outputs[0].text == "1\n"
    source.write_text("# %% [markdown]\n# new text\n\n# %%\nprint(2)\n")
    assert not build.update_markdown(target, build.build_notebook(source))
    assert nbformat.read(target, as_version=4).cells[1].source == "print(1)"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_notebook_is_a_full_run_of_its_source(name: str) -> None:
    stored = nbformat.read(build.TUTORIALS / f"{name}.ipynb", as_version=4)
    assert build.cell_sources(stored) == build.cell_sources(build.build_notebook(_source(name))), (
        f"{name}.ipynb is out of date: run `python tutorials/build.py --execute {name[:2]}`"
    )
    assert stored.metadata["botorch_tnpkr"]["smoke_test"] is False
    code = [cell for cell in stored.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    assert not _outputs(stored, "error")
    assert "full run" in _stdout(stored) and "smoke test" not in _stdout(stored)
    assert _images(stored) == FIGURES[name]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_smoke_mode(name: str, tmp_path: Path) -> None:
    for module in REQUIRES.get(name, ()):
        pytest.importorskip(module)
    nb = build.build_notebook(_source(name))
    nb, seconds = build.run_notebook(nb, smoke=True, workdir=tmp_path, timeout=SMOKE_LIMIT_S)
    assert "smoke test" in _stdout(nb)
    assert not _outputs(nb, "error")
    assert _images(nb) == FIGURES[name]
    assert seconds < SMOKE_LIMIT_S, f"{name} took {seconds:.0f} s in smoke mode"
    assert not any(REPO.glob("tutorials/runs")), "notebooks must write to their working dir"
