"""One-step BO benchmark: histories are the suite's GP runs, scores are paired and seeded."""

import json
import math

import pytest
import torch
from botorch.models import SingleTaskGP

from benchmarks import bo_step_quality as bsq
from benchmarks._bo import ADAPTATION_VERSION, Problem, StepOptions, run_bo


def test_kept_points_reproduce_the_run_values():
    problem = Problem("branin")
    options = StepOptions(num_restarts=2, raw_samples=16)
    kept = run_bo(problem, "sobol", "logei", 3, 4, options, keep_points=True)
    plain = run_bo(problem, "sobol", "logei", 3, 4, options)
    assert "points" not in plain and kept["values"] == plain["values"]
    X = torch.tensor(kept["points"], dtype=torch.float64)
    assert X.shape == (kept["n_init"] + 4, 2)
    F = problem.evaluate(X, torch.Generator())[1].squeeze(-1)
    assert torch.allclose(F, torch.tensor(kept["values"], dtype=torch.float64))


def test_posterior_scores_match_the_gaussian_density():
    torch.manual_seed(0)
    X, Xt = torch.rand(8, 2, dtype=torch.float64), torch.rand(5, 2, dtype=torch.float64)
    model = SingleTaskGP(X, X.sum(-1, keepdim=True))
    F = torch.randn(5, 1, dtype=torch.float64)
    with torch.no_grad():
        post = model.posterior(Xt)
        normal = torch.distributions.Normal(
            post.mean.squeeze(-1) / 2, post.variance.sqrt().squeeze(-1) / 2
        )
    expected = -normal.log_prob(F.squeeze(-1) / 2).mean()
    nll, rmse, sd = bsq.posterior_scores(model, Xt, F, 2.0)
    assert nll == pytest.approx(float(expected), rel=1e-9)
    assert rmse == pytest.approx(float((F.squeeze(-1) / 2 - normal.mean).pow(2).mean().sqrt()))
    assert sd == pytest.approx(float(normal.stddev.mean()))


def test_one_step_is_seeded_and_scores_are_consistent(tmp_path):
    args = bsq.parse_args(["--smoke", "--out-dir", str(tmp_path)])
    problem = Problem("branin")
    history = bsq.load_histories(
        args.histories, ["branin"], ["noiseless"], [0], 2, StepOptions(2, 16)
    )
    X, Y, F = bsq.snapshot(history["branin/noiseless/0"], 2)
    assert X.shape == (8, 2) and torch.equal(Y, F)  # noiseless: observed == true values
    first = bsq.score_step("tnpkr-exact", problem, X, Y, F, args, seed=5)
    again = bsq.score_step("tnpkr-exact", problem, X, Y, F, args, seed=5)
    assert first == again
    assert first["gain"] >= 0
    before = math.log10(problem.optimum - float(F.max()))
    # the gain is exactly how far the proposal lowered the history's simple regret
    assert first["gain"] == pytest.approx(max(0.0, before - first["proposal"]), abs=1e-9)
    assert 0 <= first["step"] <= 1


def test_smoke_run_writes_paired_report_and_reuses_histories(tmp_path):
    result = bsq.main(["--smoke", "--out-dir", str(tmp_path), "--models", "gp", "tnpkr-exact"])
    assert [r["model"] for r in result["rows"]][:2] == ["gp", result["models"][1]]
    assert len(result["rows"]) == 2 * 2  # two snapshots, two models
    block = result["summary"]["noiseless"]
    assert block["histories"] == 2 and list(block["paired"]) == [result["models"][1]]
    rows = {(r["iteration"], r["model"]): r for r in result["rows"]}
    diffs = [
        rows[(i, result["models"][1])]["proposal"] - rows[(i, "gp")]["proposal"] for i in (1, 2)
    ]
    assert block["paired"][result["models"][1]]["proposal"][0] == pytest.approx(sum(diffs) / 2)
    assert "Paired difference to gp" in (tmp_path / "bo_step_quality_smoke.md").read_text()
    histories = tmp_path / "bo_step_histories_smoke.json"
    cached = histories.stat().st_mtime_ns
    bsq.main(["--smoke", "--out-dir", str(tmp_path), "--models", "gp"])
    assert histories.stat().st_mtime_ns == cached  # no GP run repeated
    assert json.loads(histories.read_text())["branin/noiseless/0"]["iterations"] == 2


def test_known_noise_models_get_the_floored_true_level():
    X = torch.rand(6, 2, dtype=torch.float64)
    Y = 3 * X.sum(-1, keepdim=True)
    assert torch.allclose(bsq.known_noise(Y, 0.0), torch.full_like(Y, 1e-6 * float(Y.var())))
    assert torch.allclose(bsq.known_noise(Y, 0.5), torch.full_like(Y, 0.25))
    told = bsq.make_model("tnpkr-exact:known", X, Y, 0.5)
    assert torch.equal(told.train_Yvar, torch.full_like(Y, 0.25))
    assert bsq.make_model("tnpkr-exact", X, Y, 0.5).train_Yvar is None
    assert bsq.model_label("tnpkr-exact:known").endswith(f":known:cal:adapt{ADAPTATION_VERSION}")
    with pytest.raises(ValueError, match="allowed, once each: ':known'"):
        bsq.make_model("gp:exact", X, Y, 0.0)


def test_calibration_is_a_model_suffix_and_part_of_the_label():
    X = torch.rand(40, 2, dtype=torch.float64)
    Y = torch.sin(6 * X).sum(-1, keepdim=True)
    assert bsq.make_model("tnpkr-exact", X, Y, 0.0)._calibration is not None
    assert bsq.make_model("tnpkr-exact:nocal", X, Y, 0.0)._calibration is None
    assert bsq.make_model("tnpkr-exact:known:nocal", X, Y, 0.0)._calibration is None
    calibrated = bsq.model_label("tnpkr-exact:noadapt")
    plain = bsq.model_label("tnpkr-exact:nocal:noadapt")
    # rows scored before calibration existed carry the plain label: never reused as calibrated
    assert calibrated == plain + ":cal" and ":" not in plain
    assert bsq.model_label("tnpkr-exact:nocal:known:noadapt") == plain + ":known"
    for bad in ("gp:nocal", "tnpkr-exact:nocal:nocal", "tnpkr-exact:cal"):
        with pytest.raises(ValueError, match=r"suffix|TNP-KR"):
            bsq.parse_spec(bad)


def test_adaptation_is_a_model_suffix_and_part_of_the_label():
    """Rows scored before the adaptation existed (no ``:adapt<version>``) are never reused for an
    adapted model, and ``:noadapt`` builds the model without it."""
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(40, 2, generator=gen, dtype=torch.float64)
    Y = torch.sin(6 * X[:, :1])
    adapted = bsq.make_model("tnpkr-exact", X, Y, 0.0)
    plain = bsq.make_model("tnpkr-exact:noadapt", X, Y, 0.0)
    scales = adapted._context().distance_scale
    assert not torch.equal(scales, torch.ones_like(scales))
    assert plain._context().distance_scale is None
    assert (
        bsq.model_label("tnpkr-exact")
        == bsq.model_label("tnpkr-exact:noadapt") + f":adapt{ADAPTATION_VERSION}"
    )
    with pytest.raises(ValueError, match="TNP-KR"):
        bsq.parse_spec("gp:noadapt")


def test_histories_made_with_other_budgets_are_run_again(tmp_path):
    path = tmp_path / "h.json"
    first = bsq.load_histories(path, ["branin"], ["noiseless"], [0], 1, StepOptions(2, 16))
    again = bsq.load_histories(path, ["branin"], ["noiseless"], [0], 1, StepOptions(2, 16))
    assert again == first
    other = bsq.load_histories(path, ["branin"], ["noiseless"], [0], 1, StepOptions(3, 16))
    assert other["branin/noiseless/0"]["num_restarts"] == 3
    assert json.loads(path.read_text())["branin/noiseless/0"]["num_restarts"] == 3


def test_reuse_takes_earlier_rows_of_the_same_models_only(tmp_path, monkeypatch):
    first = bsq.main(["--smoke", "--out-dir", str(tmp_path), "--models", "gp"])
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps(first))
    calls = []
    real = bsq.score_step
    monkeypatch.setattr(
        bsq, "score_step", lambda spec, *a, **k: calls.append(spec) or real(spec, *a, **k)
    )
    args = ["--smoke", "--out-dir", str(tmp_path), "--models", "gp", "tnpkr-exact"]
    second = bsq.main([*args, "--reuse", str(earlier)])
    assert calls == ["tnpkr-exact", "tnpkr-exact"]  # only the new model was scored
    gp_rows = [r for r in second["rows"] if r["model"] == "gp"]
    assert gp_rows == first["rows"]
    assert len(second["rows"]) == 4 and "reuse" not in second["settings"]
    first["settings"]["raw_samples"] = 999  # scored with another optimiser budget
    earlier.write_text(json.dumps(first))
    with pytest.raises(ValueError, match="raw_samples=999"):
        bsq.main([*args, "--reuse", str(earlier)])
