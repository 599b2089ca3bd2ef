"""The symmetry-ensemble benchmark: the identity comes first, K=1 is the network itself."""

import json

import torch

from benchmarks import symmetry_ensemble as se
from botorch_tnpkr.checkpoints import load_checkpoint
from botorch_tnpkr.evaluate import EVAL_SEED, cell_tasks, evaluate_cell, evaluation_prior


def test_transforms_stay_in_the_unit_cube_and_start_with_the_identity():
    group = se.symmetries(3, 5, torch.Generator().manual_seed(1))
    x = torch.rand(4, 10, 3, dtype=torch.float64)
    assert torch.equal(se.transform_inputs(x, group[0]), x) and group[0][2] == 1.0
    for sym in group:
        y = se.transform_inputs(x, sym)
        assert y.min() >= 0 and y.max() <= 1
        # pairwise distances are invariant under permutation and reflection
        assert torch.allclose(torch.cdist(y, y), torch.cdist(x, x))


def test_smoke_k1_equals_the_evaluation_gap(tmp_path):
    result = se.main(["--smoke", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "symmetry_ensemble_smoke.json").read_text())
    assert saved["ensemble_sizes"] == [1, 2] and len(saved["rows"]) == 2
    net = load_checkpoint("tnpkr-exact").double()
    for row in saved["rows"]:
        cell = evaluate_cell(net, "rbf", 2, row["n"], 2, 64, False, EVAL_SEED)
        assert abs(row["moment1"] - cell.gap) < 1e-9
        assert abs(row["mixture1"] - cell.gap) < 1e-9
        assert row["moment2"] != row["moment1"]
    assert "mixture K=2" in (tmp_path / "symmetry_ensemble_smoke.md").read_text()
    assert set(result["summary"]) == {"all", "n=8", "n=32"}


def test_mixture_is_at_least_the_mean_member_likelihood():
    net = load_checkpoint("tnpkr-exact").double()
    batch = cell_tasks(evaluation_prior(net.config.max_dim, "rbf"), "rbf", 2, 16, 2, 32, 3)
    means, variances = se.predictions(net, batch, se.symmetries(2, 3, torch.Generator()))
    gaps = se.ensemble_gaps(batch, means, variances, [3])
    singles = [
        se.ensemble_gaps(batch, means[i : i + 1], variances[i : i + 1], [1]) for i in range(3)
    ]
    # Jensen: the mixture's log density is at least the mean of its members'
    assert gaps["mixture3"] <= sum(s["mixture1"] for s in singles) / 3 + 1e-12
