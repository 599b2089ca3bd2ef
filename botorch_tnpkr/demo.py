"""A Bayesian-optimisation run with TNPKRModel next to SingleTaskGP, on a built-in problem.

    python -m botorch_tnpkr.demo                      # Hartmann-6, 20 iterations
    python -m botorch_tnpkr.demo --problem branin --iterations 30 --seed 1
    python -m botorch_tnpkr.demo --checkpoint path/to/network.safetensors

Both surrogates start from the same Sobol design and use the same acquisition
(LogExpectedImprovement, optimised with ``optimize_acqf``); the GP is fitted with
``fit_gpytorch_mll`` at every iteration, the TNP-KR model has no fitting step. Inputs are
optimised on the unit cube and mapped to the problem's bounds. The run prints one line per
iteration, a final table (best value, simple regret, total model + acquisition time) and
writes ``regret.png`` and ``results.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from botorch.acquisition import LogExpectedImprovement
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.model import Model
from botorch.optim import optimize_acqf
from botorch.test_functions import Ackley, Branin, Hartmann, Levy, SyntheticTestFunction
from botorch.utils.sampling import draw_sobol_samples
from botorch.utils.transforms import unnormalize
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from botorch_tnpkr.model import TNPKRModel

PROBLEMS: dict[str, Callable[[], SyntheticTestFunction]] = {
    "hartmann6": lambda: Hartmann(dim=6, negate=True),
    "branin": lambda: Branin(negate=True),
    "ackley4": lambda: Ackley(dim=4, negate=True),
    "levy4": lambda: Levy(dim=4, negate=True),
}


@dataclass
class MethodResult:
    """The trace of one surrogate: every observed value and the time of every BO step."""

    name: str
    values: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)

    def best_trace(self) -> list[float]:
        best, out = -math.inf, []
        for value in self.values:
            best = max(best, value)
            out.append(best)
        return out


def _tnpkr_builder(checkpoint: str) -> Callable[[Tensor, Tensor], Model]:
    return lambda X, Y: TNPKRModel(X, Y, checkpoint=checkpoint)


def _gp_builder(X: Tensor, Y: Tensor) -> Model:
    model = SingleTaskGP(X, Y)
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model


def run_method(
    name: str,
    build: Callable[[Tensor, Tensor], Model],
    problem: SyntheticTestFunction,
    X_init: Tensor,
    iterations: int,
    seed: int,
    num_restarts: int,
    raw_samples: int,
) -> MethodResult:
    """BO with LogEI on the unit cube; prints a line per iteration."""
    bounds = problem.bounds.to(X_init)
    unit = torch.stack([torch.zeros_like(bounds[0]), torch.ones_like(bounds[0])])
    X = X_init.clone()
    Y = problem(unnormalize(X, bounds)).unsqueeze(-1)
    result = MethodResult(name, values=Y.squeeze(-1).tolist())
    optimum = problem.optimal_value
    for it in range(iterations):
        torch.manual_seed(seed * 1000 + it)
        start = time.perf_counter()
        model = build(X, Y)
        acqf = LogExpectedImprovement(model, best_f=Y.max())
        candidate, _ = optimize_acqf(
            acqf, bounds=unit, q=1, num_restarts=num_restarts, raw_samples=raw_samples
        )
        result.step_seconds.append(time.perf_counter() - start)
        y = problem(unnormalize(candidate, bounds)).unsqueeze(-1)
        X, Y = torch.cat([X, candidate]), torch.cat([Y, y])
        result.values.append(y.item())
        best = Y.max().item()
        print(
            f"[{name:>12}] iter {it + 1:3d}/{iterations}  y={y.item():10.4f}  best={best:10.4f}"
            f"  regret={optimum - best:10.4g}  step={result.step_seconds[-1]:6.2f}s",
            flush=True,
        )
    return result


def summary_table(results: Sequence[MethodResult], optimum: float) -> str:
    lines = [f"{'method':<14}{'best value':>12}{'regret':>12}{'model+acq time (s)':>22}"]
    for res in results:
        best = max(res.values)
        lines.append(
            f"{res.name:<14}{best:>12.4f}{optimum - best:>12.4g}{sum(res.step_seconds):>22.2f}"
        )
    return "\n".join(lines)


def plot_regret(
    results: Sequence[MethodResult], optimum: float, n_init: int, title: str, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for res in results:
        regret = [max(optimum - b, 1e-12) for b in res.best_trace()]
        ax.plot(range(1, len(regret) + 1), regret, label=res.name)
    ax.axvline(n_init + 0.5, color="grey", linestyle=":", label="initial design")
    ax.set_yscale("log")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("simple regret")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", choices=sorted(PROBLEMS), default="hartmann6")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--n-init", type=int, default=None, help="Sobol points (default 2d+2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkpoint",
        default="auto",
        help="'auto', a registered checkpoint name, or a path to a network file",
    )
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--num-restarts", type=int, default=8)
    parser.add_argument("--raw-samples", type=int, default=256)
    parser.add_argument("--no-gp", action="store_true", help="skip the SingleTaskGP baseline")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    problem = PROBLEMS[args.problem]().to(torch.float64)
    d = problem.dim
    n_init = args.n_init if args.n_init is not None else 2 * d + 2
    unit = torch.stack([torch.zeros(d), torch.ones(d)]).double()
    X_init = draw_sobol_samples(bounds=unit, n=n_init, q=1, seed=args.seed).squeeze(-2)
    optimum = problem.optimal_value
    print(
        f"{args.problem} (d={d}, optimum {optimum:.4f}): {n_init} Sobol points, "
        f"{args.iterations} LogEI iterations, seed {args.seed}, checkpoint {args.checkpoint!r}",
        flush=True,
    )
    common = {
        "problem": problem,
        "X_init": X_init,
        "iterations": args.iterations,
        "seed": args.seed,
        "num_restarts": args.num_restarts,
        "raw_samples": args.raw_samples,
    }
    results = [run_method("TNPKRModel", _tnpkr_builder(args.checkpoint), **common)]
    if not args.no_gp:
        results.append(run_method("SingleTaskGP", _gp_builder, **common))
    print()
    print(summary_table(results, optimum))
    args.out.mkdir(parents=True, exist_ok=True)
    plot_path = args.out / "regret.png"
    plot_regret(results, optimum, n_init, f"{args.problem}, seed {args.seed}", plot_path)
    report = {
        "problem": args.problem,
        "dim": d,
        "optimal_value": optimum,
        "n_init": n_init,
        "iterations": args.iterations,
        "seed": args.seed,
        "checkpoint": str(args.checkpoint),
        "methods": [asdict(res) for res in results],
    }
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    print(f"\nregret plot: {plot_path}\nresults: {args.out / 'results.json'}")
    return report


if __name__ == "__main__":
    main()
