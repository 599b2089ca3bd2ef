"""Joint posteriors over a q-batch: ``TNPKRModel(..., joint="autoregressive")``.

TNP-KR predicts the points of a q-batch independently given the history, so Monte-Carlo
acquisition functions would treat two nearly identical candidates as two independent chances.
In joint mode a posterior over ``q >= 2`` points is a ``TNPKRJointPosterior``: its samples are
drawn autoregressively (``botorch_tnpkr.nn.causal.sample_autoregressive``): the latent ``f``
at point 1 from its predictive, that value added to the history, point 2 predicted, and so on,
with ``f_k = mean_k + sqrt(fvar_k) * z_k``. The base samples ``z`` come from BoTorch's
samplers (Sobol quasi-MC by default, registered with ``get_sampler``), so acquisition values
are deterministic in ``X`` and differentiable (the reparameterisation trick), as with a GP.

* The history is encoded once; sampled points enter causally, sharing its encoding (see
  ``nn/causal.py``). Per acquisition evaluation the cost is O(S q (n + q)) network reads for
  ``S`` samples, against O(q n) for the independent posterior. A prefix of points common to
  all t-batches (qLogNEI's baseline) is sampled once.
* Sampled values enter the history as tokens of the history's own kind: with known noise
  ``KNOWN_NOISE`` (units of the history's ``y_scale^2``; a latent value is a noiseless
  observation) when the history has ``train_Yvar``, with inferred noise otherwise (the network
  was never trained on contexts mixing the two). ``benchmarks/joint_tokens.py`` found no
  measurable difference between the two kinds with the shipped checkpoint.
* Conditional means are centred (``sample_autoregressive(centre=True)``): the same
  benchmark measured the mean of the second point's samples 0.23 sd off the independent mean
  without centring, 0.05 sd with it, at equal correlations.
* Points that are inputs of the history in every batch element (qLogNEI's baseline; all of
  them when qLogNEI prunes its baseline with 2,048 samples) are drawn from their independent
  predictive, added to every path, and condition the new points; they are not sampled
  autoregressively among themselves (their latent values are pinned by the data to about
  the noise level, and that pass would cost 2,048 x n network steps).
* ``observation_noise=True`` adds the noise variance of each point independently to the
  latent joint sample (with a second set of base samples); a tensor of noise variances is
  added likewise.
* ``mean`` and ``variance`` are those of the independent posterior (the exact predictive of
  each point given the history; the autoregressive marginals of points 2..q agree with them to
  the extent the network is consistent). ``covariance_matrix`` is moment matched: the
  correlations of ``num_moment_samples`` fixed quasi-MC joint samples, scaled to those
  variances.
* Several outputs are independent tasks of the network: each is sampled jointly over the
  q-batch, independently of the others. Outcome transforms are applied to the samples;
  ``ScalarizedPosteriorTransform`` (any affine ``PosteriorTransform`` with ``evaluate``) is
  applied to the samples and to the marginal posterior; other posterior transforms raise
  ``UnsupportedError``.
* A posterior over a single point (``q = 1``) is the independent ``GPyTorchPosterior``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from botorch.acquisition.objective import PosteriorTransform, ScalarizedPosteriorTransform
from botorch.exceptions.errors import UnsupportedError
from botorch.posteriors.posterior import Posterior
from botorch.sampling.base import MCSampler
from botorch.sampling.get_sampler import GetSampler
from botorch.sampling.normal import IIDNormalSampler, SobolQMCNormalSampler
from botorch.utils.sampling import draw_sobol_normal_samples
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from torch import Tensor
from torch.quasirandom import SobolEngine

from botorch_tnpkr.model.layout import QueryLayout
from botorch_tnpkr.model.validation import broadcast_batch, network_errors
from botorch_tnpkr.nn import TNPKR, ContextCache
from botorch_tnpkr.nn.causal import sample_autoregressive

if TYPE_CHECKING:
    from botorch_tnpkr.model.tnpkr_model import TNPKRModel

JOINT_MODES = ("autoregressive",)
# Noise variance of a sampled latent value as a history token, in units of the history's
# y_scale^2 (about the variance of the standardised data). The network was trained on noise
# variances down to 1e-6 of the signal.
KNOWN_NOISE = 1e-4
# Samples behind the moment-matched covariance.
NUM_MOMENT_SAMPLES = 512


def check_joint(joint: object) -> str | None:
    """Validate the ``joint`` argument of ``TNPKRModel``."""
    if joint is None or (isinstance(joint, str) and joint in JOINT_MODES):
        return joint
    raise UnsupportedError(
        f"joint must be None (independent predictions) or one of {JOINT_MODES}, got {joint!r}."
    )


class TNPKRJointPosterior(Posterior):
    """The autoregressive joint posterior of a ``TNPKRModel`` over a q-batch.

    Samples have shape ``sample_shape x batch_shape x q x m`` (``m``: the selected outputs,
    1 after a scalarising posterior transform). Use ``rsample_from_base_samples`` with a
    ``SobolQMCNormalSampler`` or ``IIDNormalSampler`` (``get_sampler`` returns one) for
    fixed base samples.
    """

    def __init__(
        self,
        network: TNPKR,
        cache: ContextCache,
        layout: QueryLayout,
        X_net: Tensor,
        marginal: Posterior,
        noise: Tensor | None,
        to_output: Callable[[Tensor], Tensor],
        known_noise: float | None = KNOWN_NOISE,
        history_points: Tensor | None = None,
    ) -> None:
        """
        Args:
            network: The model's network.
            cache: The encoded history.
            layout: How `batch x q` maps onto the network's tasks.
            X_net: `B x G x q x d` test inputs in the network's layout.
            marginal: The independent posterior (outputs selected, transforms applied).
            noise: `batch x q x m` observation-noise variances (transformed space), added
                to the latent samples with their own base samples; None for latent samples.
            to_output: Maps `S x batch x q x m` transformed-space samples to the output
                space (outcome transform undone, outputs selected, posterior transform).
            known_noise: Noise variance of sampled values as history tokens (units of
                ``y_scale^2``); None for tokens whose noise the network infers.
            history_points: Optional `q` bool, True where every batch element's point is an
                input of the history: those are drawn from their independent predictive and
                condition the others (see ``sample_autoregressive(independent=...)``).
        """
        self._network = network
        self._cache = cache
        self._layout = layout
        self._X_net = X_net
        self._marginal = marginal
        self._noise = noise
        self._to_output = to_output
        self._known_noise = known_noise
        self._history_points = history_points
        self._covariance: Tensor | None = None

    # ------------------------------------------------------------------ shapes
    @property
    def batch_shape(self) -> torch.Size:
        return self._layout.out_batch

    @property
    def event_shape(self) -> torch.Size:
        return self._marginal.mean.shape[-2:]

    @property
    def base_sample_shape(self) -> torch.Size:
        """`batch x q x m` (all outputs), with a trailing 2 when noise is added."""
        shape = self.batch_shape + torch.Size([self._layout.q, self._layout.num_outputs])
        return shape if self._noise is None else shape + torch.Size([2])

    @property
    def batch_range(self) -> tuple[int, int]:
        return (0, -2) if self._noise is None else (0, -3)

    def _extended_shape(self, sample_shape: torch.Size = torch.Size()) -> torch.Size:  # noqa: B008
        return sample_shape + self.batch_shape + self.event_shape

    @property
    def device(self) -> torch.device:
        return self._X_net.device

    @property
    def dtype(self) -> torch.dtype:
        return self._X_net.dtype

    # ------------------------------------------------------------------ moments
    @property
    def mean(self) -> Tensor:
        """`batch x q x m` means of the independent posterior."""
        return self._marginal.mean

    @property
    def variance(self) -> Tensor:
        """`batch x q x m` variances of the independent posterior."""
        return self._marginal.variance

    @property
    def marginal(self) -> Posterior:
        """The independent posterior (same marginal moments, no correlation)."""
        return self._marginal

    @property
    def covariance_matrix(self) -> Tensor:
        """Moment-matched covariance, `batch x (q m) x (q m)` (interleaved outputs).

        The correlations of ``NUM_MOMENT_SAMPLES`` fixed quasi-MC joint samples (outputs are
        independent), scaled to the marginal variances; computed once, without gradients.
        """
        if self._covariance is None:
            self._covariance = self._moment_matched_covariance()
        return self._covariance

    @property
    def mvn(self) -> MultivariateNormal:
        """The moment-matched Gaussian (``mean``, ``covariance_matrix``) for analytic uses.

        A ``MultivariateNormal`` over the q points for one output, an interleaved
        ``MultitaskMultivariateNormal`` for several; ``GPyTorchPosterior(posterior.mvn)`` is
        a posterior that BoTorch's analytic acquisition functions accept.
        """
        mean, covariance = self.mean, self.covariance_matrix
        if mean.shape[-1] == 1:
            return MultivariateNormal(mean.squeeze(-1), covariance)
        return MultitaskMultivariateNormal(mean, covariance, interleaved=True)

    def _moment_matched_covariance(self) -> Tensor:
        shape = self.base_sample_shape
        dims = math.prod(shape[self.batch_range[1] :])
        with torch.no_grad():
            if dims <= SobolEngine.MAXDIM:
                z = draw_sobol_normal_samples(dims, NUM_MOMENT_SAMPLES, dtype=self.dtype, seed=0)
            else:
                gen = torch.Generator().manual_seed(0)
                z = torch.randn(NUM_MOMENT_SAMPLES, dims, generator=gen, dtype=self.dtype)
            z = z.to(self.device).view(
                NUM_MOMENT_SAMPLES, *[1] * len(self.batch_shape), *shape[self.batch_range[1] :]
            )
            z = z.expand(NUM_MOMENT_SAMPLES, *shape)
            samples = self.rsample_from_base_samples(torch.Size([NUM_MOMENT_SAMPLES]), z)
        q, m = samples.shape[-2:]
        centred = samples - samples.mean(dim=0, keepdim=True)
        per_output = centred.movedim(-1, -2)  # (N, batch, m, q)
        cov = torch.einsum("n...i,n...j->...ij", per_output, per_output)  # (batch, m, q, q)
        std = cov.diagonal(dim1=-2, dim2=-1).clamp_min(1e-300).sqrt()
        corr = cov / (std.unsqueeze(-1) * std.unsqueeze(-2))
        target = self.variance.movedim(-1, -2).sqrt()  # (batch, m, q)
        cov = corr * target.unsqueeze(-1) * target.unsqueeze(-2)
        eye = torch.eye(m, dtype=cov.dtype, device=cov.device)
        # Interleaved (q m) x (q m): entry [(i, a), (j, b)] = cov[a, i, j] if a == b else 0.
        full = torch.einsum("...aij,ab->...iajb", cov, eye)
        return full.reshape(*cov.shape[:-3], q * m, q * m)

    # ------------------------------------------------------------------ sampling
    def rsample(self, sample_shape: torch.Size | None = None) -> Tensor:
        sample_shape = torch.Size() if sample_shape is None else torch.Size(sample_shape)
        base = torch.randn(
            sample_shape + self.base_sample_shape, dtype=self.dtype, device=self.device
        )
        return self.rsample_from_base_samples(sample_shape, base)

    def rsample_from_base_samples(self, sample_shape: torch.Size, base_samples: Tensor) -> Tensor:
        """Joint samples from base samples of shape ``sample_shape x base_sample_shape``."""
        expected = sample_shape + self.base_sample_shape
        if base_samples.shape != expected:
            raise RuntimeError(
                f"base_samples have shape {tuple(base_samples.shape)}, expected {tuple(expected)}."
            )
        num = max(math.prod(sample_shape), 1)
        base = base_samples.reshape(num, *self.base_sample_shape)
        latent = base if self._noise is None else base[..., 0]
        layout, q = self._layout, self._layout.q
        b, g = self._X_net.shape[:2]
        # The samples as extra leading batch dimensions of an augmented layout: its network
        # order is (tasks, samples, groups, q).
        with_samples = QueryLayout.build(
            torch.Size([num, *layout.out_batch]), layout.model_batch, q, layout.num_outputs
        )
        z = _to_network(with_samples, latent).view(b, num, g, q).transpose(1, 2)
        with network_errors():
            f = sample_autoregressive(
                self._network,
                self._cache,
                self._X_net,
                z,
                known_noise=self._known_noise,
                centre=True,
                independent=self._history_points,
            )  # (B, G, S, q)
        samples = with_samples.unfold(f.transpose(1, 2).reshape(b, num * g * q))
        if self._noise is not None:
            samples = samples + self._noise.sqrt() * base[..., 1]
        out = self._to_output(samples)
        return out.reshape(sample_shape + out.shape[1:])


def _to_network(layout: QueryLayout, values: Tensor) -> Tensor:
    """Inverse of ``layout.unfold``: `out_batch x q x m` to the network's `B x nT`."""
    m, k, lead = layout.num_outputs, len(layout.model_batch), len(layout.lead)
    split = []
    for mb, r in zip(layout.model_batch, layout.repeat, strict=True):
        split += [mb, r]
    z = values.reshape(*layout.lead, *split, layout.q, m)
    # Axes of z: lead (0..lead-1), then (model_i, repeat_i) pairs, then q, m.
    model_axes = [lead + 2 * i for i in range(k)]
    repeat_axes = [lead + 2 * i + 1 for i in range(k)]
    perm = [*model_axes, *range(lead), *repeat_axes, lead + 2 * k, lead + 2 * k + 1]
    z = z.permute(perm).reshape(math.prod(layout.model_batch), -1, m)  # (P, nT, m)
    return z.transpose(-1, -2).reshape(-1, z.shape[-2])


def joint_posterior(
    model: TNPKRModel,
    X_tf: Tensor,
    idcs: list[int] | None,
    marginal: Posterior,
    noise: Tensor | None,
    posterior_transform: PosteriorTransform | None,
) -> TNPKRJointPosterior:
    """The joint posterior of ``model`` at the `batch x q x d` inputs ``X_tf``.

    Args:
        model: A ``TNPKRModel`` in joint mode.
        X_tf: Input-transformed test points.
        idcs: Selected outputs (None: all).
        marginal: The model's independent posterior at ``X_tf`` (outcome transform undone,
            outputs selected, noise included), before ``posterior_transform``.
        noise: Observation-noise variances to add, broadcastable to `batch x q x m`
            (transformed space), or None.
        posterior_transform: Applied to the marginal and to the samples (affine only).
    """
    if posterior_transform is not None and not isinstance(
        posterior_transform, ScalarizedPosteriorTransform
    ):
        raise UnsupportedError(
            f"TNPKRModel(joint='autoregressive') supports ScalarizedPosteriorTransform only, "
            f"got {type(posterior_transform).__name__}; use joint=None for other transforms."
        )
    if posterior_transform is not None:
        marginal = posterior_transform(posterior=marginal, X=X_tf)
    cache = model._context()
    *x_batch, q, d = X_tf.shape
    out_batch = broadcast_batch("X", torch.Size(x_batch), model.batch_shape)
    layout = QueryLayout.build(out_batch, model.batch_shape, q, model.num_outputs)
    X_net = layout.fold(X_tf)
    X_net = X_net.view(X_net.shape[0], -1, q, d)
    transform = getattr(model, "outcome_transform", None)

    def to_output(samples: Tensor) -> Tensor:
        if transform is not None:
            X_full = X_tf.expand(*samples.shape[:-1], d)
            samples, _ = transform.untransform(samples, X=X_full)
        if idcs is not None:
            samples = samples[..., idcs]
        if posterior_transform is not None:
            samples = posterior_transform.evaluate(samples).unsqueeze(-1)
        return samples

    return TNPKRJointPosterior(
        network=model.network,
        cache=cache,
        layout=layout,
        X_net=X_net,
        marginal=marginal,
        noise=noise,
        to_output=to_output,
        known_noise=KNOWN_NOISE if model.train_Yvar is not None else None,
        history_points=history_points(X_tf, model),
    )


def history_points(X_tf: Tensor, model: TNPKRModel) -> Tensor:
    """`q` bool: True where the point of every batch element of ``X_tf`` is a history input.

    Rows are matched bit for bit: a random projection of each row is looked up among the
    sorted projections of the history's inputs and the row is then compared exactly, so a
    collision can only make a history point look new (an autoregressive step more).
    """
    train = model.train_X
    if hasattr(model, "input_transform"):
        train = model.input_transform.preprocess_transform(train)
    d, q = X_tf.shape[-1], X_tf.shape[-2]
    train = train.reshape(-1, d).detach()
    rows = X_tf.detach().reshape(-1, q, d)
    weights = torch.randn(d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    weights = weights.to(train)
    keys, order = torch.sort((train * weights).sum(-1))
    found = torch.searchsorted(keys, (rows * weights).sum(-1)).clamp_max(len(keys) - 1)
    same = (train[order[found]] == rows).all(dim=-1)  # (batch, q)
    return same.all(dim=0)


@GetSampler.register(TNPKRJointPosterior)
def _get_sampler_joint(
    posterior: TNPKRJointPosterior, sample_shape: torch.Size, *, seed: int | None = None
) -> MCSampler:
    """Sobol quasi-MC base samples (i.i.d. normal where the dimension exceeds Sobol's)."""
    sampler = SobolQMCNormalSampler(sample_shape=sample_shape, seed=seed)
    collapsed = sampler._get_collapsed_shape(posterior=posterior)[len(sample_shape) :]
    if collapsed.numel() > SobolEngine.MAXDIM:
        return IIDNormalSampler(sample_shape=sample_shape, seed=seed)
    return sampler
