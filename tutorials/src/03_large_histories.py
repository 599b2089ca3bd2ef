# %% [markdown]
# # Large histories: 10,000+ observations
#
# An exact Gaussian process costs `O(n^3)` time and `O(n^2)` memory to fit on `n`
# observations, and it is refitted at every step of Bayesian optimisation. `TNPKRModel` has
# no fitting step: it encodes the history once per step and then answers the thousands of
# posterior calls of the acquisition optimiser from a cache.
#
# `checkpoint="auto"` (the default) picks the network by the size of the history:
#
# | history | network | encoding | each posterior call |
# |---|---|---|---|
# | up to 4,096 points | `tnpkr-exact` (exact attention) | `O(n^2)` | `O(n q)` |
# | above 4,096 points | `tnpkr-dka` (linear attention) | `O(n)` | `O(q)` |
#
# The exact network runs in a tiled "scan" mode above 1,024 points (same function, memory
# independent of `n x q`); the linear one keeps a fixed-size summary of the history.
#
# This notebook measures the time of one BO step against `n` next to `SingleTaskGP`, and
# what the switch to linear attention costs in accuracy, on noisy Hartmann-6 data.
# `SMOKE_TEST=1` shrinks every size (the test suite runs it that way); the stored outputs come
# from a full run on 2 shared CPU cores, one torch thread, with two training runs in the
# background, so absolute times are noisy: compare the methods, not the seconds.

# %%
import os
import time

import matplotlib.pyplot as plt
import torch
from botorch.acquisition import LogExpectedImprovement
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.optim import optimize_acqf
from botorch.test_functions import Hartmann
from gpytorch.mlls import ExactMarginalLogLikelihood

from botorch_tnpkr import TNPKRModel

SMOKE_TEST = os.environ.get("SMOKE_TEST", "") not in ("", "0")
torch.set_default_dtype(torch.float64)
print("smoke test" if SMOKE_TEST else "full run")

problem = Hartmann(dim=6, negate=True)
NOISE_STD = 0.05
bounds = torch.stack([torch.zeros(6), torch.ones(6)])


def history(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uniformly random points of noisy Hartmann-6: a stand-in for a long experiment."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 6, generator=gen)
    Y = problem(X).unsqueeze(-1) + NOISE_STD * torch.randn(n, 1, generator=gen)
    return X, Y


# %% [markdown]
# ## 1. Time of one BO step against the size of the history
#
# One step = build the surrogate on the whole history + maximise `LogExpectedImprovement`
# with `optimize_acqf` (8 restarts, 256 raw samples). For the GP, building includes fitting
# its hyperparameters. The GP is run up to 1,000 points only: on this machine a single GP
# step at 2,000 points took more than 10 minutes in the project's benchmark
# (`benchmarks/bo_step_scaling.py`), so larger sizes are not attempted here.

# %%
if SMOKE_TEST:
    tnpkr_sizes, gp_sizes, acq = [100, 5_000], [100], {"num_restarts": 2, "raw_samples": 32}
else:
    tnpkr_sizes = [250, 500, 1_000, 2_000, 5_000, 10_000, 20_000]
    gp_sizes = [250, 500, 1_000]
    acq = {"num_restarts": 8, "raw_samples": 256}


def bo_step(build, X: torch.Tensor, Y: torch.Tensor) -> tuple[float, float, object]:
    """Seconds to build the model, seconds for the whole step, and the model."""
    torch.manual_seed(0)
    start = time.perf_counter()
    model = build(X, Y)
    built = time.perf_counter() - start
    acqf = LogExpectedImprovement(model, best_f=Y.max())
    optimize_acqf(acqf, bounds=bounds, q=1, **acq)
    return built, time.perf_counter() - start, model


def fit_gp(X: torch.Tensor, Y: torch.Tensor) -> SingleTaskGP:
    gp = SingleTaskGP(X, Y)
    fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    return gp


timings = []
for n in sorted(set(tnpkr_sizes) | set(gp_sizes)):
    X, Y = history(n, seed=0)
    if n in tnpkr_sizes:
        built, total, model = bo_step(TNPKRModel, X, Y)
        timings.append(("TNPKRModel", model.checkpoint_source, n, built, total))
    if n in gp_sizes:
        built, total, _ = bo_step(fit_gp, X, Y)
        timings.append(("SingleTaskGP", "-", n, built, total))
print(f"{'model':<13}{'network':<13}{'n':>8}{'build (s)':>11}{'step (s)':>10}")
for name, network, n, built, total in timings:
    print(f"{name:<13}{network:<13}{n:>8,}{built:>11.2f}{total:>10.2f}")

# %%
fig, ax = plt.subplots(figsize=(7, 4.2))
styles = {
    "tnpkr-exact": ("C0", "o", "TNPKRModel, exact attention"),
    "tnpkr-dka": ("C2", "s", "TNPKRModel, linear attention"),
    "-": ("C1", "^", "SingleTaskGP (fit + step)"),
}
for key, (color, marker, label) in styles.items():
    rows = [(n, total) for _, network, n, _, total in timings if network == key]
    if rows:
        ax.plot(*zip(*rows, strict=True), marker=marker, color=color, label=label)
ax.axvline(4096, color="grey", ls=":", label='"auto" switches networks (4,096)')
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("observations in the history (n)")
ax.set_ylabel("seconds per BO step")
ax.set_title("One LogEI step on Hartmann-6 (d = 6)")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# What to look at: the GP's step time grows steeply with `n` (its fit is cubic, and the
# acquisition optimisation works with `n x n` matrices), and it is already slower than
# TNP-KR at 1,000 points. TNP-KR's exact network grows more gently (its encoding is
# quadratic, each posterior call linear in `n`); above 4,096 points `"auto"` switches to the
# linear-attention network, whose step time drops and then grows only slowly, so that BO on
# tens of thousands of observations takes a few seconds per step on one CPU thread. The table
# above splits build time (encoding, or fitting for the GP) from the whole step. Most of
# TNP-KR's build time is the distance adaptation (`adapt=True`, the default: 20 gradient
# steps that fit the network's distances to the history, at a cost that does not grow with
# `n`); at a few hundred points it makes TNP-KR slower than the GP. `TNPKRModel(X, Y,
# adapt=False)` skips it, for a less accurate model whose build is the encoding alone.
#
# ## 2. What linear attention costs in accuracy
#
# The fast network is not free. Below, both networks predict 1,000 held-out points of the
# same function from histories of increasing size, and we compare
#
# - the root-mean-square error (RMSE) of the predicted mean against the noisy held-out values;
# - the mean log-likelihood of the held-out values under the predictive distribution
#   (`observation_noise=True`; higher is better: it rewards calibrated uncertainty too).
#
# Both networks are forced with `checkpoint="tnpkr-exact"` / `checkpoint="tnpkr-dka"`, so
# they are compared on the same histories. `SingleTaskGP` is the reference: fitted on the
# whole history up to 1,000 points, and on a random subset of 1,000 points above (a common
# workaround when the exact GP gets too slow).

# %%
accuracy_sizes = [200] if SMOKE_TEST else [500, 1_000, 2_000, 4_000]
gp_cap = 200 if SMOKE_TEST else 1_000
X_test, Y_test = history(200 if SMOKE_TEST else 1_000, seed=99)


def scores(model) -> tuple[float, float]:
    with torch.no_grad():
        post = model.posterior(X_test, observation_noise=True)
        mean, var = post.mean, post.variance
        rmse = (mean - Y_test).pow(2).mean().sqrt()
        loglik = torch.distributions.Normal(mean, var.sqrt()).log_prob(Y_test).mean()
    return float(rmse), float(loglik)


accuracy = {"tnpkr-exact": {}, "tnpkr-dka": {}, "SingleTaskGP": {}}
for n in accuracy_sizes:
    X, Y = history(n, seed=1)
    for name in ("tnpkr-exact", "tnpkr-dka"):
        accuracy[name][n] = scores(TNPKRModel(X, Y, checkpoint=name))
    subset = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:gp_cap]
    accuracy["SingleTaskGP"][n] = scores(fit_gp(X[subset], Y[subset]))

print(f"{'n':>6} " + "".join(f"{name + ' RMSE':>20}{'loglik':>8}" for name in accuracy))
for n in accuracy_sizes:
    print(
        f"{n:>6} "
        + "".join(f"{accuracy[m][n][0]:>20.3f}{accuracy[m][n][1]:>8.2f}" for m in accuracy)
    )

# %%
labels = {
    "tnpkr-exact": ("C0", "o", "TNP-KR, exact attention"),
    "tnpkr-dka": ("C2", "s", "TNP-KR, linear attention"),
    "SingleTaskGP": ("C1", "^", f"SingleTaskGP (on at most {gp_cap:,} points)"),
}
fig, (ax_rmse, ax_ll) = plt.subplots(1, 2, figsize=(11, 4))
for name, (color, marker, label) in labels.items():
    ns = list(accuracy[name])
    ax_rmse.plot(ns, [accuracy[name][n][0] for n in ns], marker=marker, color=color, label=label)
    ax_ll.plot(ns, [accuracy[name][n][1] for n in ns], marker=marker, color=color, label=label)
ax_rmse.axhline(NOISE_STD, color="grey", ls=":", label="noise level (best possible)")
for ax in (ax_rmse, ax_ll):
    ax.set_xscale("log")
    ax.set_xlabel("observations in the history (n)")
ax_rmse.set_ylabel("held-out RMSE")
ax_ll.set_ylabel("held-out log-likelihood per point")
ax_rmse.set_title("RMSE of the mean (lower is better)")
ax_ll.set_title("log-likelihood (higher is better)")
fig.legend(*ax_rmse.get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=9)
fig.tight_layout(rect=(0, 0.08, 1, 1))
plt.show()

# %% [markdown]
# What to look at: the exact network and the GP get better with more data; the
# linear-attention network does not, in the stored run: its error stays at the same level
# from 500 to 4,000 points and is about twice the exact network's (see the table above). That
# is the price of linear attention with today's interim `tnpkr-dka` checkpoint: it summarises
# the history in a fixed-size cache, and this checkpoint, trained for a few hours on one CPU
# core, keeps only a coarse summary. Hartmann-6 is smooth and the noise is small, which is
# where a fitted GP is at its best: the GP is the most accurate of the three up to 2,000
# points, even when it only sees 1,000 of them. At 4,000 points, where the GP still sees a
# subset of 1,000, the exact network catches up with it in the stored run (about the same
# RMSE and a higher log-likelihood). Both networks are still being trained; these are the shipped
# checkpoints' numbers today, not a limit of the method.
#
# In practice:
#
# - Up to a few thousand points, keep the default (`"auto"` uses the exact network), or a GP if
#   its time per step is acceptable to you.
# - Beyond that, the exact GP stops being an option; the linear network keeps each BO step at
#   seconds. `linear_above=` moves the switch (`linear_above=None` keeps the exact network at
#   any size; its memory stays bounded in scan mode, but its encoding time grows
#   quadratically).
# - `TNPKRModel(..., checkpoint="tnpkr-dka")` or `"tnpkr-exact"` forces one network.
