# %% [markdown]
# # TNP-KR in Ax: `ax.api.Client`, analyses, saving and loading
#
# [Ax](https://ax.dev) runs the experiment: it keeps the trials, transforms the parameters,
# and chooses what to try next with a *generation strategy*. `botorch_tnpkr.ax` provides a
# strategy whose model-based step uses `TNPKRModel` instead of Ax's Gaussian process: a Sobol
# design first, then TNP-KR with Ax's own acquisition function (`qLogNoisyExpectedImprovement`
# here, which also handles outcome constraints and pending trials).
#
# This notebook
#
# 1. sets up an experiment with an objective and an outcome constraint;
# 2. runs it with `configure_tnpkr`, two trials at a time;
# 3. inspects it with Ax's summary, best-point and cross-validation analyses;
# 4. saves it to JSON, loads it back and carries on.
#
# `SMOKE_TEST=1` shrinks the budgets (the test suite runs it that way). The stored outputs
# come from a full run on 2 shared CPU cores with one torch thread.

# %%
import logging
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from ax.analysis.plotly.cross_validation import CrossValidationPlot
from ax.api.client import Client
from ax.api.configs import RangeParameterConfig
from ax.utils.common.logger import set_ax_logger_levels
from botorch.test_functions import Hartmann
from IPython.display import display

from botorch_tnpkr.ax import configure_tnpkr  # importing it also registers TNPKRModel with Ax

SMOKE_TEST = os.environ.get("SMOKE_TEST", "") not in ("", "0")
set_ax_logger_levels(logging.WARNING)  # keep Ax's progress messages out of the notebook
print("smoke test" if SMOKE_TEST else "full run")

# %% [markdown]
# ## 1. The experiment
#
# Minimise the Hartmann-3 function over `[0, 1]^3` subject to `||x||_2 <= 1.25` (Ax's own
# tutorials use its six-dimensional sibling). Both outcomes come from one evaluation; in a
# real experiment this would be a training run or a lab measurement.

# %%
hartmann3 = Hartmann(dim=3)


def evaluate(parameters: dict) -> dict:
    x = torch.tensor([[parameters[f"x{i}"] for i in range(3)]], dtype=torch.float64)
    return {"hartmann3": float(hartmann3(x)), "l2norm": float(x.norm())}


client = Client(random_seed=0)
client.configure_experiment(
    name="hartmann3_with_tnpkr",
    parameters=[
        RangeParameterConfig(name=f"x{i}", parameter_type="float", bounds=(0.0, 1.0))
        for i in range(3)
    ],
)
client.configure_optimization(objective="-hartmann3", outcome_constraints=["l2norm <= 1.25"])

# %% [markdown]
# ## 2. The TNP-KR strategy
#
# `configure_tnpkr(client, ...)` checks that the search space fits the network (at most 10
# inputs after Ax's encoding) and sets a strategy of `initialization_trials` Sobol trials
# followed by TNP-KR. `checkpoint="auto"` (the default) uses the exact-attention network up
# to 4,096 trials and the linear-attention one above. `num_restarts` and `raw_samples` are
# the acquisition optimiser's budget (smaller than Ax's defaults, to keep this notebook
# quick).

# %%
init_trials, rounds, batch = (3, 2, 2) if SMOKE_TEST else (6, 7, 2)
optimizer = {"num_restarts": 8, "raw_samples": 256}
if SMOKE_TEST:
    optimizer = {"num_restarts": 2, "raw_samples": 32, "optimizer_options": {"maxiter": 10}}
strategy = configure_tnpkr(client, initialization_trials=init_trials, seed=0, **optimizer)
print(strategy.name, "with nodes", [node.name for node in strategy._nodes])

# %% [markdown]
# The loop is Ax's usual ask-and-tell: `get_next_trials` proposes parameters (here two at a
# time; the second is chosen knowing that the first is pending), we evaluate them and report
# the results with `complete_trial`. First the Sobol trials, then TNP-KR's. (The first
# model-based call returns one trial only, with a warning from Ax: the call that moves from
# the Sobol node to the TNPKR node is still limited by the Sobol node.)

# %%
gen_seconds = []
while len(client._experiment.trials) < init_trials:
    for index, parameters in client.get_next_trials(max_trials=batch).items():
        client.complete_trial(index, raw_data=evaluate(parameters))
for _ in range(rounds):
    start = time.perf_counter()
    trials = client.get_next_trials(max_trials=batch)
    gen_seconds.append(time.perf_counter() - start)
    for index, parameters in trials.items():
        client.complete_trial(index, raw_data=evaluate(parameters))
    print(f"trials {min(trials)}-{max(trials)} proposed in {gen_seconds[-1]:.1f} s")

# %% [markdown]
# ## 3. Analyses
#
# `client.summarize()` is a table with one row per trial: its status, the node of the
# strategy that generated it (`Sobol` or `TNPKR`), the observed outcomes and the parameters.

# %%
summary = client.summarize()
display(summary)

# %% [markdown]
# The best feasible trial so far. `use_model_predictions=False` asks for the best *observed*
# value; with `True`, Ax would use the model's predictions of the observed points (and falls
# back to the observed values when the model fits badly, which it says in a warning).

# %%
best_parameters, best_values, best_trial, best_arm = client.get_best_parameterization(
    use_model_predictions=False
)
print(
    f"best trial {best_trial}: hartmann3 = {best_values['hartmann3'][0]:.3f}, "
    f"l2norm = {best_values['l2norm'][0]:.3f}"
)
print({name: round(value, 3) for name, value in best_parameters.items()})

# %% [markdown]
# Progress: every trial's objective (crosses: infeasible, `l2norm > 1.25`) and the best
# feasible value so far. The optimum of Hartmann-3 is -3.863 (it satisfies the constraint:
# its norm is about 1.02).

# %%
feasible = summary["l2norm"] <= 1.25
best_so_far = summary["hartmann3"].where(feasible).cummin().ffill()
fig, ax = plt.subplots(figsize=(7, 3.8))
for node, marker in [("Sobol", "s"), ("TNPKR", "o")]:
    for ok, fill in [(True, None), (False, "x")]:
        rows = summary[(summary["generation_node"] == node) & (feasible == ok)]
        ax.scatter(
            rows["trial_index"],
            rows["hartmann3"],
            marker=fill or marker,
            color="C0" if node == "Sobol" else "C1",
            label=f"{node} trial" + ("" if ok else " (infeasible)"),
        )
ax.step(summary["trial_index"], best_so_far, where="post", color="k", label="best feasible")
ax.axhline(-3.86278, color="grey", ls=":", label="optimum")
ax.set_xlabel("trial index")
ax.set_ylabel("hartmann3 (lower is better)")
ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
fig.tight_layout()
plt.show()

# %% [markdown]
# Ax's analyses are computed by `client.compute_analyses`. Each returns a *card* (or a group
# of cards) holding a title, a subtitle and a data frame; in Jupyter, `display=True` renders
# them as interactive plotly figures. Here we take the data frame of the
# cross-validation analysis and draw it with matplotlib: every observed point is left out in
# turn, the model is rebuilt on the others (for TNP-KR that is one forward pass, nothing to
# refit) and predicts it.

# %%
cards = client.compute_analyses([CrossValidationPlot()], display=False)
cv_cards = [card for card in cards[0].children if card.title.startswith("Cross Validation for")]
fig, axes = plt.subplots(1, len(cv_cards), figsize=(5.5 * len(cv_cards), 4))
for ax, card in zip(axes, cv_cards, strict=True):
    df = card.df
    ax.errorbar(
        df["observed"],
        df["predicted"],
        yerr=df["predicted_95_ci"],
        fmt="o",
        ms=4,
        capsize=2,
        label="left-out trial (prediction, 95% interval)",
    )
    lo = min(df["observed"].min(), df["predicted"].min())
    hi = max(df["observed"].max(), df["predicted"].max())
    ax.plot([lo, hi], [lo, hi], "k:", label="perfect prediction")
    ax.set_title(card.title, fontsize=10)
    ax.set_xlabel("observed (standardised by Ax)")
    ax.set_ylabel("predicted (standardised by Ax)")
    ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# What to look at: points near the dotted diagonal are predicted well; the R² in each title
# summarises it (1 is perfect, 0 is no better than predicting the mean, negative is worse).
# With twenty trials every model has little to go on: trials far from all the others (most of
# the Sobol trials) get wide intervals and the largest errors, while the trials clustered
# near the optimum are predicted closely. Ax runs the same check to warn when a model fits
# poorly (and then, for example, reports the best observed point instead of the model's).
#
# The model can also be queried directly: `client.predict` returns the mean and the standard
# error of every outcome for any parameters.

# %%
prediction = client.predict([best_parameters])[0]
for metric, (mean, sem) in prediction.items():
    print(f"{metric}: predicted {mean:.3f} +- {sem:.3f}, observed {best_values[metric][0]:.3f}")

# %% [markdown]
# ## 4. Saving and loading
#
# `save_to_json_file` writes the experiment, its data and the generation strategy
# (including which checkpoint TNP-KR uses) to one JSON file. To load it, import
# `botorch_tnpkr.ax` first: the import registers `TNPKRModel` with Ax's storage, so that
# the strategy can be rebuilt. The restored client carries on where the saved one stopped.

# %%
snapshot = Path("hartmann3_tnpkr.json")
client.save_to_json_file(str(snapshot))
print(f"saved {snapshot} ({snapshot.stat().st_size / 1024:.0f} KiB)")

restored = Client.load_from_json_file(str(snapshot))
print(
    len(restored._experiment.trials),
    "trials restored; strategy:",
    restored._generation_strategy.name,
)
for index, parameters in restored.get_next_trials(max_trials=1).items():
    restored.complete_trial(index, raw_data=evaluate(parameters))
    node = restored._experiment.trials[index].generator_run._generation_node_name
    print(f"trial {index} generated by the restored strategy's {node} node")

# %% [markdown]
# ## Summary
#
# - `configure_tnpkr(client, ...)` is all it takes to run an Ax experiment on TNP-KR;
#   everything else (constraints, batches of trials, analyses, storage) is Ax's.
# - The time per `get_next_trials` call is printed above; on this small experiment it is
#   dominated by Ax's acquisition optimisation, not by the model. At a few dozen trials TNP-KR
#   is not faster than Ax's GP; its advantage is at thousands of trials, where the GP's cubic
#   cost takes over (see `03_large_histories.ipynb`).
# - `tnpkr_generation_strategy(...)` returns the same strategy for the legacy `AxClient` or
#   for `Client.set_generation_strategy`, and `tnpkr_model_config(...)` is the `ModelConfig`
#   for strategies of your own.
