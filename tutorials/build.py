"""Build the tutorial notebooks from their sources in ``tutorials/src``, and run them.

    python tutorials/build.py --execute      # run every notebook top to bottom with full
                                             # budgets; store outputs and plots in the .ipynb
    python tutorials/build.py --execute 03   # only the notebooks whose name starts with 03
    python tutorials/build.py --check        # exit 1 if a notebook's cells differ from its source
    python tutorials/build.py --text         # take markdown edits into the stored notebooks
                                             # without running them (code cells must be unchanged)
    python tutorials/build.py --smoke 02     # run in smoke mode (SMOKE_TEST=1), store nothing

Sources are percent-format Python files: a line ``# %% [markdown]`` starts a markdown cell
(each of its lines loses the leading ``# ``), a line ``# %%`` starts a code cell.

Notebooks run in a fresh temporary directory (files they write stay out of the repository)
with a kernel on this interpreter (``sys.executable``), the repository on ``PYTHONPATH`` and
``OMP_NUM_THREADS=1`` unless set. The test suite (``tests/tutorials``) uses ``run_notebook``
from this file to execute every notebook in smoke mode.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat

TUTORIALS = Path(__file__).resolve().parent
REPO = TUTORIALS.parent
SOURCES = TUTORIALS / "src"
KERNEL_NAME = "botorch-tnpkr-python"
MARKDOWN, CODE = "# %% [markdown]", "# %%"


def sources() -> list[Path]:
    """The notebook sources, in order (``NN_name.py``)."""
    return sorted(SOURCES.glob("[0-9][0-9]_*.py"))


def notebook_path(source: Path) -> Path:
    return TUTORIALS / f"{source.stem}.ipynb"


def parse_cells(text: str) -> list[tuple[str, str]]:
    """``(kind, source)`` pairs of a percent-format file; kind is ``markdown`` or ``code``."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.strip() == MARKDOWN:
            cells.append(("markdown", []))
        elif line.strip() == CODE:
            cells.append(("code", []))
        elif cells:
            kind, lines = cells[-1]
            if kind == "markdown":
                if line.strip() and not line.startswith("#"):
                    raise ValueError(f"markdown cell line without '# ': {line!r}")
                line = line[2:] if line.startswith("# ") else line[1:]
            lines.append(line)
        elif line.strip():
            raise ValueError(f"text before the first cell marker: {line!r}")
    return [(kind, "\n".join(lines).strip("\n")) for kind, lines in cells]


def build_notebook(source: Path) -> nbformat.NotebookNode:
    """A notebook without outputs from a percent-format source."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(text)
        if kind == "markdown"
        else nbformat.v4.new_code_cell(text)
        for kind, text in parse_cells(source.read_text())
    ]
    nb.metadata.update(
        {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        }
    )
    return nb


def cell_sources(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def update_markdown(target: Path, nb: nbformat.NotebookNode) -> bool:
    """Copy the markdown of ``nb`` into the stored notebook ``target``, keeping its outputs.

    Outputs depend on the code cells only, so this is exact when the code cells (their kinds,
    order and sources) are unchanged; returns False (and writes nothing) otherwise.
    """
    stored = nbformat.read(target, as_version=4) if target.is_file() else None
    if stored is None:
        return False
    kinds = [(c.cell_type, c.source if c.cell_type == "code" else "") for c in stored.cells]
    if kinds != [(c.cell_type, c.source if c.cell_type == "code" else "") for c in nb.cells]:
        return False
    for old, new in zip(stored.cells, nb.cells, strict=True):
        if old.cell_type == "markdown":
            old.source = new.source
    nbformat.write(stored, target)
    print(f"updated the text of {target.name}")
    return True


def _kernel_manager(spec_dir: Path):
    """A kernel manager that starts ipykernel on this interpreter, whatever kernelspecs exist."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernel_dir = spec_dir / KERNEL_NAME
    kernel_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "botorch-tnpkr (this interpreter)",
        "language": "python",
    }
    (kernel_dir / "kernel.json").write_text(json.dumps(spec))
    manager = KernelSpecManager(kernel_dirs=[str(spec_dir)], ensure_native_kernel=False)
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=manager)


def run_notebook(
    nb: nbformat.NotebookNode, smoke: bool, workdir: Path | None = None, timeout: int = 1800
) -> tuple[nbformat.NotebookNode, float]:
    """Execute ``nb`` top to bottom (in place); returns it and the wall time in seconds.

    Raises ``nbclient.exceptions.CellExecutionError`` naming the failing cell.
    """
    from nbclient import NotebookClient

    env = dict(os.environ)
    env.pop("SMOKE_TEST", None)
    if smoke:
        env["SMOKE_TEST"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    with tempfile.TemporaryDirectory(prefix="tnpkr-tutorial-") as tmp:
        run_dir = Path(workdir) if workdir is not None else Path(tmp) / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        client = NotebookClient(
            nb,
            timeout=timeout,
            km=_kernel_manager(Path(tmp) / "kernels"),
            resources={"metadata": {"path": str(run_dir)}},
            record_timing=False,
        )
        start = time.monotonic()
        client.execute(env=env)
        seconds = time.monotonic() - start
    return nb, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="name prefixes (e.g. 01 03_large)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--execute", action="store_true", help="run with full budgets and store")
    mode.add_argument("--check", action="store_true", help="compare notebooks with sources")
    mode.add_argument("--smoke", action="store_true", help="run in smoke mode, store nothing")
    mode.add_argument(
        "--text", action="store_true", help="update markdown cells only (code unchanged)"
    )
    args = parser.parse_args(argv)
    chosen = [s for s in sources() if not args.only or s.stem.startswith(tuple(args.only))]
    if not chosen:
        print("no tutorial source matches", args.only, file=sys.stderr)
        return 2
    stale = []
    for source in chosen:
        nb = build_notebook(source)
        target = notebook_path(source)
        if args.check:
            stored = nbformat.read(target, as_version=4) if target.is_file() else None
            if stored is None or cell_sources(stored) != cell_sources(nb):
                stale.append(target.name)
            continue
        if args.text:
            if not update_markdown(target, nb):
                stale.append(target.name)
            continue
        nb, seconds = run_notebook(nb, smoke=args.smoke)
        print(f"{target.name}: {seconds:.1f} s ({'smoke' if args.smoke else 'full'})", flush=True)
        if args.smoke:
            continue
        nb.metadata["botorch_tnpkr"] = {"smoke_test": False, "seconds": round(seconds, 1)}
        nbformat.write(nb, target)
        print(f"wrote {target.relative_to(REPO)}")
    if stale:
        print("out of date (run python tutorials/build.py --execute):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
