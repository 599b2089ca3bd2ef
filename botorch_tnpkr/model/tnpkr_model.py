"""``TNPKRModel``: a pretrained TNP-KR network as a BoTorch ``Model``.

There is no fitting step. The constructor encodes the history once (``TNPKR.encode``); every
``posterior`` call reuses that context cache and only runs ``TNPKR.predict`` on the test
points, whatever their batch shape, in one call.

Layout. ``m`` outputs are ``m`` independent single-output tasks of the network, folded with the
model's batch dimensions into the network's batch: ``B = prod(batch_shape) * m``. The
posterior is a ``GPyTorchPosterior`` with a diagonal covariance (TNP-KR predicts marginals;
points of a q-batch and outputs are independent given the history): a ``MultivariateNormal``
for one output, an interleaved ``MultitaskMultivariateNormal`` for several. With
``joint="autoregressive"``, a posterior over two or more points is joint instead
(``TNPKRJointPosterior``, sampled point after point; see ``model/joint.py``).

Noise. The network predicts, at every test point, the latent ``f`` (mean and variance) and an
observation-noise variance. ``observation_noise=False`` gives the posterior of ``f``;
``True`` adds the predicted noise variance, or, when ``train_Yvar`` was given, the mean of the
known noise levels of the history (per batch and output, like a fixed-noise GP); a tensor is
added as it is. As everywhere in BoTorch, a noise tensor (here and in
``condition_on_observations(noise=...)`` / ``fantasize(observation_noise=...)``) is in the
outcome-transformed space; with ``Standardize`` that is ``Yvar / stdvs**2``.

Known noise. ``train_Yvar`` is passed through the outcome transform (``Standardize`` divides
it by the squared standard deviation) and handed to the network as known noise levels of the
context points (``TNPKR.encode(..., yvar=...)``).

Transforms. The history is kept in original units as non-persistent buffers. The outcome
transform is learnt at construction (as in ``SingleTaskGP``) and applied in eval mode to the
history whenever it is encoded. A linear outcome transform (``Standardize``) is undone
exactly on the predicted mean and variance tensors, before ``output_indices`` are selected;
a non-linear one (``Log``) through its ``untransform_posterior``, as in BoTorch's GPs.
The input transform is learnt at construction; the history is encoded with
``input_transform.preprocess_transform`` and test points go through ``transform_inputs``
inside ``posterior``. ``_set_transformed_inputs`` / ``_revert_to_original_inputs`` are no-ops
(there are no GPyTorch ``train_inputs`` to swap, and the stored history is never transformed
in place, so nothing is transformed twice and ``eval()`` does not warn). Parameters of a
transform (``Warp``'s concentrations) are constants, as the network's weights are: there is no
fitting step, and the cached encoding holds no autograd graph into them.

Inputs far outside the unit cube. The history warns (``InputDataWarning``) as in BoTorch's
models; test points do not. Transformed inputs are clamped to ``[-1e6, 1e6]``, where the
network's prediction has saturated to its far-field value (larger magnitudes overflow in
float32), so any finite input gives a finite posterior.

State dict. The network weights and the transforms' state are in the state dict, the
history is not, so a state dict from a model on ``n`` points loads into one on ``n - 1``
(Ax's cross-validation). Loading a state dict, or moving the model with ``.to``, drops the
context cache; the next ``posterior`` re-encodes the history with the loaded weights and
transforms (the history is stored untransformed, so this is exact).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import warnings
from typing import Any

import torch
from botorch import settings
from botorch.acquisition.objective import PosteriorTransform
from botorch.exceptions.errors import (
    BotorchTensorDimensionError,
    InputDataError,
    UnsupportedError,
)
from botorch.models.model import FantasizeMixin, Model
from botorch.models.transforms.input import InputTransform
from botorch.models.transforms.outcome import OutcomeTransform, Standardize
from botorch.models.utils.assorted import check_min_max_scaling
from botorch.posteriors.gpytorch import GPyTorchPosterior
from botorch.posteriors.posterior import Posterior
from botorch.utils.datasets import SupervisedDataset
from botorch.utils.types import DEFAULT, _DefaultType
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from linear_operator.operators import DiagLinearOperator
from torch import Tensor

from botorch_tnpkr.model.dedupe import carries_grad, predict_rows
from botorch_tnpkr.model.joint import check_joint, joint_posterior
from botorch_tnpkr.model.layout import QueryLayout, contexts
from botorch_tnpkr.model.network import (
    AUTO,
    DEFAULT_LINEAR_ABOVE,
    DEFAULT_SCAN_ABOVE,
    CheckpointLike,
    prepare_network,
)
from botorch_tnpkr.model.scaling import context_spread, rescale_cache
from botorch_tnpkr.model.validation import (
    broadcast_batch,
    check_adaptation,
    check_calibration,
    check_finite,
    check_output_indices,
    check_test_inputs,
    check_training_data,
    clamp_far,
    network_errors,
)
from botorch_tnpkr.nn import TNPKR, Adaptation, Calibration, ContextCache

# Keys Ax passes to ``construct_inputs`` that describe the search space. One-hot encoded
# categorical inputs are ordinary inputs to the network; fidelity and task features have no
# special meaning to it, so asking for them is an error rather than a silent downgrade.
_AX_IGNORED = ("categorical_features",)
_AX_UNSUPPORTED = ("fidelity_features", "task_feature")


def _drop_cache(module: TNPKRModel, incompatible_keys: Any) -> None:
    """``load_state_dict`` post-hook: weights or transform state changed, re-encode lazily."""
    module._cache = None
    module._memo = None


class TNPKRModel(Model, FantasizeMixin):
    """A pretrained TNP-KR network as a BoTorch surrogate (no fitting).

    Example:
        >>> model = TNPKRModel(train_X, train_Y, checkpoint="path/to/network.safetensors")
        >>> acqf = LogExpectedImprovement(model, best_f=train_Y.max())
        >>> candidate, _ = optimize_acqf(acqf, bounds, q=1, num_restarts=8, raw_samples=256)

    See the module docstring for how noise, transforms and the state dict are handled.
    """

    _num_outputs: int
    _input_dim: int
    _transformed_dim: int
    _cache: ContextCache | None
    _mean_noise: Tensor | None

    def __init__(
        self,
        train_X: Tensor,
        train_Y: Tensor,
        train_Yvar: Tensor | None = None,
        input_transform: InputTransform | None = None,
        outcome_transform: OutcomeTransform | _DefaultType | None = DEFAULT,
        checkpoint: CheckpointLike = AUTO,
        linear_above: int | None = DEFAULT_LINEAR_ABOVE,
        scan_above: int | None = DEFAULT_SCAN_ABOVE,
        encode_dtype: torch.dtype | None = torch.float32,
        joint: str | None = None,
        calibrate: bool | Calibration = True,
        adapt: bool | Adaptation = True,
    ) -> None:
        r"""
        Args:
            train_X: A `batch_shape x n x d` tensor of training inputs (the unit cube, or raw
                units with an input transform such as ``Normalize``).
            train_Y: A `batch_shape x n x m` tensor of training observations.
            train_Yvar: An optional `batch_shape x n x m` tensor of known observation-noise
                variances; the network then conditions on them instead of inferring noise.
            input_transform: An input transform, learnt on ``train_X`` here and applied to
                the test inputs in ``posterior``.
            outcome_transform: An outcome transform, learnt on ``train_Y`` here. Defaults to
                ``Standardize(m, batch_shape)`` as in ``SingleTaskGP``; ``None`` for none.
            checkpoint: ``"auto"`` (a registered checkpoint chosen by ``n``, see
                ``linear_above``), a registered checkpoint name, a path to a network file,
                or a ``TNPKR`` network (copied).
            linear_above: With ``checkpoint="auto"``, histories of more than this many
                points use the linear-attention checkpoint (``tnpkr-dka``) instead of the
                exact one (``tnpkr-exact``). ``None`` never switches.
            scan_above: Exact-attention networks encode and predict in ``scan`` mode (same
                function, tiled, bounded memory) above this many points. ``None`` keeps the
                network's mode.
            encode_dtype: Dtype in which the history is encoded (the O(n^2) or O(n) part,
                once per model); ``None`` for the data's dtype. The default, float32, is the
                dtype the network was trained in and makes encoding 2-3x faster than float64;
                the cache is then cast to the data's dtype, so that posteriors (the hot path
                of acquisition optimisation) run in the data's dtype with smooth gradients.
            joint: ``None`` (default): the points of a q-batch are independent given the
                history. ``"autoregressive"``: posteriors over ``q >= 2`` points are joint,
                sampled point after point (``TNPKRJointPosterior``, see ``model/joint.py``).
            calibrate: Rescale the predicted variances by a factor measured on the history
                itself: each of 4 folds is predicted from the others and the factor is the
                mean squared standardised error (``nn.calibration``; histories of 32 points
                or more, 16 folds below 128 points; above 512 points, 128 held-out points
                are predicted from all the others instead; about one to three encodings'
                worth, once per model). Models derived from this one (``fantasize``,
                ``condition_on_observations``, ``subset_output``) keep its factor: they are
                built inside acquisition functions, where recalibrating would cost more
                than the rest of the model, and a few more points barely move it. Build a
                new ``TNPKRModel`` to recalibrate on a grown history.
                ``True`` (default) uses ``Calibration()``, a ``Calibration`` its settings,
                ``False`` predicts the network's variances as they are.
            adapt: Fit `d` distance scales to each history before encoding it: factors of
                each input dimension in the network's kernel-bias distances, chosen by a few
                Adam steps on the likelihood of held-out folds of the history itself
                (``nn.adaptation``; histories of 16 points or more, at most 256 points per
                step, so the cost does not grow with ``n``; once per model, before the
                calibration). The network mis-reads lengthscales, most of all when they
                differ between dimensions; this is its counterpart of a GP's fitted ARD
                lengthscales. Derived models keep this model's scales, as they keep its
                variance factor. ``True`` (default) uses ``Adaptation()``, an
                ``Adaptation`` its settings, ``False`` keeps the network's distances.

        Raises:
            BotorchTensorDimensionError: Inconsistent shapes.
            InputDataError: NaN or infinite data, negative variances, mixed dtypes.
            UnsupportedError: The (transformed) input dimension exceeds the network's
                ``max_dim``.
            CheckpointError: The checkpoint is unknown, unregistered or corrupted.
        """
        check_training_data(train_X, train_Y, train_Yvar)
        joint = check_joint(joint)
        calibration = check_calibration(calibrate)
        adaptation = check_adaptation(adapt)
        super().__init__()
        network, source = prepare_network(
            checkpoint,
            num_points=train_X.shape[-2],
            dtype=train_X.dtype,
            device=train_X.device,
            linear_above=linear_above,
            scan_above=scan_above,
        )
        if isinstance(outcome_transform, _DefaultType):
            outcome_transform = Standardize(m=train_Y.shape[-1], batch_shape=train_X.shape[:-2])
        with torch.no_grad():
            # Learns e.g. the bounds of a Normalize transform, as SingleTaskGP does.
            X_tf = self.transform_inputs(train_X, input_transform=input_transform)
            if outcome_transform is not None:
                outcome_transform.to(train_X)
                outcome_transform.train()
                outcome_transform(train_Y, train_Yvar, X=X_tf)
        max_dim = network.config.max_dim
        if X_tf.shape[-1] > max_dim:
            raise UnsupportedError(
                f"The model's inputs have d={X_tf.shape[-1]} dimensions (after the input "
                f"transform); the network {source!r} accepts at most max_dim={max_dim}."
            )
        check_finite("The input-transformed train_X", X_tf)
        if settings.validate_input_scaling.on():
            check_min_max_scaling(X_tf)
        self._setup(
            network=network,
            source=source,
            train_X=train_X,
            train_Y=train_Y,
            train_Yvar=train_Yvar,
            input_transform=input_transform,
            outcome_transform=outcome_transform,
            encode_dtype=encode_dtype,
            joint=joint,
            calibration=calibration,
            adaptation=adaptation,
        )

    def _setup(
        self,
        network: TNPKR,
        source: str,
        train_X: Tensor,
        train_Y: Tensor,
        train_Yvar: Tensor | None,
        input_transform: InputTransform | None,
        outcome_transform: OutcomeTransform | None,
        encode_dtype: torch.dtype | None,
        joint: str | None = None,
        calibration: Calibration | None = None,
        var_scale: Tensor | None = None,
        adaptation: Adaptation | None = None,
        distance_scale: Tensor | None = None,
    ) -> None:
        """Register modules and the history, then encode it (shared by derived models).

        ``var_scale`` (`batch_shape x m`, derived models) is the variance factor of every
        context, used instead of calibrating on this history; ``distance_scale``
        (`batch_shape x m x d`) the same for the distance scales of ``adaptation``."""
        self._encode_dtype = encode_dtype
        self._joint = joint
        self._calibration = calibration
        self._fixed_var_scale = var_scale
        self._adaptation = adaptation
        self._fixed_distance_scale = distance_scale
        self._cache = None
        self._memo = None  # predictions of repeated test points, see ``dedupe``
        self._mean_noise = None
        self.network = network
        self._source = source
        if input_transform is not None:
            self.input_transform = input_transform.to(train_X)
        if outcome_transform is not None:
            self.outcome_transform = outcome_transform.to(train_X)
        # The history, in original units: non-persistent so that state dicts of models
        # with different n are interchangeable.
        self.register_buffer("train_X", train_X, persistent=False)
        self.register_buffer("train_Y", train_Y, persistent=False)
        self.register_buffer("train_Yvar", train_Yvar, persistent=False)
        self._num_outputs = train_Y.shape[-1]
        self._input_dim = train_X.shape[-1]
        # No GPyTorch likelihood: FantasizeMixin.fantasize then asks ``posterior`` for the
        # observation noise (``observation_noise=True``).
        self.likelihood = None
        self.register_load_state_dict_post_hook(_drop_cache)
        self.eval()
        self._encode()

    # ------------------------------------------------------------------ properties
    @property
    def num_outputs(self) -> int:
        r"""The number of outputs ``m``."""
        return self._num_outputs

    @property
    def batch_shape(self) -> torch.Size:
        r"""The batch shape of the history (grows by the fantasy dimensions in fantasies)."""
        return self.train_X.shape[:-2]

    @property
    def checkpoint_source(self) -> str:
        """The checkpoint name or path the network came from."""
        return self._source

    # ------------------------------------------------------------------ encoding
    def _transformed_history(self) -> tuple[Tensor, Tensor, Tensor | None]:
        X_tf = self.train_X
        if hasattr(self, "input_transform"):
            X_tf = self.input_transform.preprocess_transform(self.train_X)
        X_tf = clamp_far(X_tf)
        Y_tf, Yvar_tf = self.train_Y, self.train_Yvar
        if hasattr(self, "outcome_transform"):
            Y_tf, Yvar_tf = self.outcome_transform(Y_tf, Yvar_tf, X=X_tf)
        check_finite("The outcome-transformed train_Y", Y_tf)
        return X_tf, Y_tf, Yvar_tf

    def _encode(self) -> ContextCache:
        """Encode the history once; differentiable in it (fantasies carry gradients).

        Only the history's tensors are tracked: the network is frozen and the transforms'
        parameters (e.g. ``Warp``'s concentrations) are constants of a model without a
        fitting step. A cache tied to a graph into them would live as long as the model,
        so a second ``backward`` through it would fail and ``deepcopy`` would refuse it.
        """
        history = (self.train_X, self.train_Y, self.train_Yvar)
        track = any(t is not None and t.requires_grad for t in history)
        with torch.set_grad_enabled(track and torch.is_grad_enabled()):
            return self._encode_history()

    def _encode_history(self) -> ContextCache:
        X_tf, Y_tf, Yvar_tf = self._transformed_history()
        self._transformed_dim = X_tf.shape[-1]
        xc, yc, yvar = contexts(X_tf, Y_tf, Yvar_tf)
        spread = context_spread(yc)
        yc = yc / spread.unsqueeze(-1)
        yvar = None if yvar is None else yvar / spread.unsqueeze(-1) ** 2
        dtype = xc.dtype
        encoder = self.network
        if self._encode_dtype is not None and self._encode_dtype != dtype:
            # A frozen copy of a 0.6 MB network: negligible next to the encoding itself.
            encoder = copy.deepcopy(self.network).to(self._encode_dtype)
            xc, yc = xc.to(self._encode_dtype), yc.to(self._encode_dtype)
            yvar = None if yvar is None else yvar.to(self._encode_dtype)
        fixed = self._fixed_var_scale
        scales = self._fixed_distance_scale
        if scales is not None:
            scales = scales.reshape(-1, scales.shape[-1]).to(xc)
        with network_errors():
            calibration = self._calibration if fixed is None else None
            cache = encoder.encode(
                xc,
                yc,
                yvar=yvar,
                calibration=calibration,
                adaptation=self._adaptation if scales is None else None,
                distance_scale=scales,
            )
            if fixed is not None:
                cache = dataclasses.replace(cache, var_scale=fixed.reshape(-1).to(cache.y_loc))
            self._cache = rescale_cache(cache.to(dtype), spread)
        self._mean_noise = None if Yvar_tf is None else Yvar_tf.mean(dim=-2, keepdim=True)
        return self._cache

    def _context(self) -> ContextCache:
        if self._cache is None:
            self._encode()
        return self._cache

    def _data_placement(self) -> tuple[Any, ...]:
        weight = next(self.network.parameters())
        return (self.train_X.dtype, self.train_X.device, weight.dtype, weight.device)

    def _apply(self, fn: Any, recurse: bool = True) -> TNPKRModel:
        # ``.to(...)``, ``.double()``, ``.cuda()`` that move or cast the model make the cache
        # stale. Analytic acquisition functions call ``self.to(X)`` on every evaluation, a
        # no-op that must not cost a re-encoding.
        before = self._data_placement() if "network" in self._modules else None
        out = super()._apply(fn, recurse)
        if before is not None and self._data_placement() != before:
            self._cache = None
            self._memo = None
        return out

    def _set_transformed_inputs(self) -> None:
        """No-op: the history stays untransformed; ``posterior`` transforms test inputs."""

    def _revert_to_original_inputs(self) -> None:
        """No-op (see ``_set_transformed_inputs``)."""

    # ------------------------------------------------------------------ posterior
    def _predict(self, X_tf: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, latent variance and noise variance, `batch x q x m`, transformed units."""
        cache = self._context()
        *x_batch, q, _ = X_tf.shape
        out_batch = broadcast_batch("X", torch.Size(x_batch), self.batch_shape)
        if q == 0 or 0 in out_batch:  # legal in BoTorch: an empty posterior
            empty = X_tf.new_zeros(*out_batch, q, self.num_outputs)
            return empty, empty, empty
        layout = QueryLayout.build(out_batch, self.batch_shape, q, self.num_outputs)
        xt = layout.fold(X_tf)

        def predict(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            with network_errors():
                prediction = self.network.predict(cache, x)
            return prediction.mean, prediction.fvar, prediction.noise_var

        outputs, self._memo = predict_rows(
            predict, xt, cache, self._memo, cache_has_grad=carries_grad(cache)
        )
        return tuple(layout.unfold(z) for z in outputs)

    def _noise_tensor(self, noise: Tensor, shape: torch.Size) -> Tensor:
        """A user's noise tensor broadcast to `batch x q x m` (transformed units)."""
        if not isinstance(noise, Tensor):
            raise InputDataError(f"observation_noise must be a bool or a Tensor, got {noise!r}.")
        check_finite("observation_noise", noise)
        if bool((noise < 0).any()):
            raise InputDataError("observation_noise contains negative variances.")
        if shape[-1] == 1 and noise.dim() >= 1 and noise.shape[-1] != 1:
            noise = noise.unsqueeze(-1)  # a `batch x q` tensor for a single output
        try:
            fits = noise.dim() <= len(shape) and torch.broadcast_shapes(noise.shape, shape) == shape
        except RuntimeError:
            fits = False
        if not fits:
            raise BotorchTensorDimensionError(
                f"observation_noise of shape {tuple(noise.shape)} does not broadcast to the "
                f"posterior's `batch x q x m` shape {tuple(shape)}."
            )
        return noise.to(dtype=self.train_X.dtype, device=self.train_X.device).expand(shape)

    def _transform_test_inputs(self, X: Tensor) -> Tensor:
        """``transform_inputs(X)``, checked against the transformed history's columns.

        Transforms may change ``d`` and ``q`` on test points only (``AppendFeatures``
        appends the environmental columns the history already holds; ``InputPerturbation``
        turns each point into ``n_w``), so ``d`` is checked after the transform.
        """
        try:
            X_tf = self.transform_inputs(X)
        except (RuntimeError, IndexError, BotorchTensorDimensionError) as err:
            if X.shape[-1] == self._input_dim:
                raise
            raise BotorchTensorDimensionError(
                f"X has d={X.shape[-1]} input columns, which the input transform does not "
                f"accept; the model was built on d={self._input_dim} ({err})."
            ) from err
        if X_tf.shape[-1] != self._transformed_dim:
            raise BotorchTensorDimensionError(
                f"X has d={X.shape[-1]} input columns, d={X_tf.shape[-1]} after the input "
                f"transform; the model's history has d={self._transformed_dim} after the "
                f"input transform (train_X has d={self._input_dim})."
            )
        return X_tf

    @staticmethod
    def _distribution(mean: Tensor, var: Tensor) -> MultivariateNormal:
        if mean.shape[-1] == 1:
            return MultivariateNormal(mean.squeeze(-1), DiagLinearOperator(var.squeeze(-1)))
        covar = DiagLinearOperator(var.reshape(*var.shape[:-2], -1))  # interleaved order
        return MultitaskMultivariateNormal(mean, covar, interleaved=True)

    def posterior(
        self,
        X: Tensor,
        output_indices: list[int] | None = None,
        observation_noise: bool | Tensor = False,
        posterior_transform: PosteriorTransform | None = None,
    ) -> Posterior:
        r"""The posterior at ``X``, from the cached history (no re-encoding).

        Args:
            X: A `batch_shape x q x d` tensor (any number of batch dimensions, broadcast
                against the model's ``batch_shape``), in the units of ``train_X``. An input
                transform may change ``q`` and ``d`` (``InputPerturbation``,
                ``AppendFeatures``): the posterior is over the transformed points, and ``d``
                must match the history's after the transform. Inputs beyond 1e6 in magnitude
                (after the transform) are clamped there: the far-field prediction.
            output_indices: Outputs to return (all if None).
            observation_noise: False for the latent function; True to add the predicted
                noise (or the mean known noise when the model has ``train_Yvar``); a
                tensor broadcastable to `batch_shape x q x m` to add that noise variance,
                in the outcome-transformed space (BoTorch's convention).
            posterior_transform: Applied to the posterior last.

        Returns:
            A ``GPyTorchPosterior`` over `broadcast(batch_shape, model.batch_shape) x q x m'`
            (m' = number of selected outputs) with a diagonal covariance; with a non-linear
            outcome transform (``Log``) what its ``untransform_posterior`` returns.
        """
        self.eval()
        has_transform = hasattr(self, "input_transform")
        check_test_inputs(X, None if has_transform else self._input_dim, self.train_X.dtype)
        idcs = check_output_indices(output_indices, self.num_outputs)
        X_tf = clamp_far(self._transform_test_inputs(X) if has_transform else X)
        mean, var, noise_var = self._predict(X_tf)
        noise = None
        if isinstance(observation_noise, bool):
            if observation_noise:
                noise = noise_var if self._mean_noise is None else self._mean_noise
        elif isinstance(observation_noise, Tensor):
            noise = self._noise_tensor(observation_noise, var.shape)
        else:
            raise InputDataError(
                f"observation_noise must be a bool or a Tensor, got {observation_noise!r}."
            )
        if noise is not None:
            var = var + noise
        posterior = self._untransformed_posterior(mean, var, X_tf, idcs)
        if self._joint is not None and X_tf.shape[-2] > 1:
            return joint_posterior(self, X_tf, idcs, posterior, noise, posterior_transform)
        if posterior_transform is not None:
            return posterior_transform(posterior=posterior, X=X_tf)
        return posterior

    def _untransformed_posterior(
        self, mean: Tensor, var: Tensor, X_tf: Tensor, idcs: list[int] | None
    ) -> Posterior:
        """Undo the outcome transform, then select outputs.

        Linear transforms (``Standardize``) are undone exactly on the mean and variance
        tensors, so the result stays a ``GPyTorchPosterior``. Non-linear ones (``Log``) go
        through ``untransform_posterior`` as in BoTorch's GP models (e.g. log-normal moments),
        falling back to ``untransform`` of the moments where that is not implemented.
        """
        transform = getattr(self, "outcome_transform", None)
        if transform is not None and not transform._is_linear:
            all_outputs = idcs is None or idcs == list(range(self.num_outputs))
            try:
                if not all_outputs:
                    raise UnsupportedError(
                        f"{type(transform).__name__} is not linear, so output_indices cannot "
                        "be selected after un-transforming; use subset_output instead."
                    )
                prior = GPyTorchPosterior(self._distribution(mean, var))
                return transform.untransform_posterior(prior, X=X_tf)
            except NotImplementedError:
                pass
        if transform is not None:
            mean, var = transform.untransform(mean, var, X=X_tf)
        if idcs is not None:
            mean, var = mean[..., idcs], var[..., idcs]
        return GPyTorchPosterior(self._distribution(mean, var))

    # ------------------------------------------------------------------ new models
    def _derive(
        self,
        train_X: Tensor,
        train_Y: Tensor,
        train_Yvar: Tensor | None,
        outcome_transform: OutcomeTransform | _DefaultType | None = DEFAULT,
        outputs: list[int] | None = None,
    ) -> TNPKRModel:
        """A model on another history with this model's network (shared, frozen), copies
        of its transforms (kept in eval mode: nothing is re-learnt), its variance factor and
        distance scales (of the outputs ``outputs``, default all), broadcast to the new batch
        shape."""
        cache = self._context()
        var_scale, scales = cache.var_scale, cache.distance_scale
        if var_scale is not None:
            var_scale = var_scale.view(*self.batch_shape, self.num_outputs)
            if outputs is not None:
                var_scale = var_scale[..., outputs]
            var_scale = var_scale.expand(*train_Y.shape[:-2], var_scale.shape[-1])
        if scales is not None:
            scales = scales.detach().view(*self.batch_shape, self.num_outputs, -1)
            if outputs is not None:
                scales = scales[..., outputs, :]
            scales = scales.expand(*train_Y.shape[:-2], *scales.shape[-2:])
        new = self.__class__.__new__(self.__class__)
        Model.__init__(new)
        if isinstance(outcome_transform, _DefaultType):
            outcome_transform = copy.deepcopy(getattr(self, "outcome_transform", None))
        new._setup(
            network=self.network,
            source=self._source,
            train_X=train_X,
            train_Y=train_Y,
            train_Yvar=train_Yvar,
            input_transform=copy.deepcopy(getattr(self, "input_transform", None)),
            outcome_transform=outcome_transform,
            encode_dtype=self._encode_dtype,
            joint=self._joint,
            calibration=self._calibration,
            var_scale=var_scale,
            adaptation=self._adaptation,
            distance_scale=scales,
        )
        return new

    def condition_on_observations(
        self, X: Tensor, Y: Tensor, noise: Tensor | None = None, **kwargs: Any
    ) -> TNPKRModel:
        r"""A new model whose history also holds ``(X, Y)``; this model is unchanged.

        Args:
            X: A `batch_shape x n' x d` tensor of new inputs (original units).
            Y: A `batch_shape' x n' x m` tensor of new observations in original units
                (``batch_shape'`` broadcasts with ``batch_shape`` and the model's batch
                shape; fantasize passes `num_fantasies x batch_shape x n' x m`).
            noise: Optional known noise variances of ``Y`` (broadcastable to its shape), in
                the outcome-transformed space as in BoTorch. A model with ``train_Yvar``
                uses the mean of its known noise levels when omitted; a model that infers
                noise ignores it (with a warning): the network cannot mix known and
                unknown noise in one history.

        Returns:
            The conditioned model, with batch shape
            ``broadcast(model.batch_shape, X batch, Y batch)``.
        """
        self.eval()
        m, dtype = self.num_outputs, self.train_X.dtype
        check_test_inputs(X, self._input_dim, dtype)
        if not isinstance(Y, Tensor) or Y.dtype != dtype:
            raise InputDataError(f"Y must be a {dtype} tensor.")
        if m == 1 and Y.dim() >= 1 and Y.shape[-1] != 1:
            Y = Y.unsqueeze(-1)
        if Y.dim() < 2 or Y.shape[-2:] != torch.Size([X.shape[-2], m]):
            raise BotorchTensorDimensionError(
                f"Y must have shape `batch_shape x n' x m` = `... x {X.shape[-2]} x {m}` to "
                f"match X {tuple(X.shape)}, got {tuple(Y.shape)}."
            )
        check_finite("Y", Y)
        batch = broadcast_batch("X and Y", self.batch_shape, X.shape[:-2], Y.shape[:-2])
        Yvar = self._new_noise(X, Y, noise, batch)

        def cat(old: Tensor, new: Tensor) -> Tensor:
            return torch.cat(
                [old.expand(*batch, *old.shape[-2:]), new.expand(*batch, *new.shape[-2:])],
                dim=-2,
            )

        return self._derive(
            cat(self.train_X, X),
            cat(self.train_Y, Y),
            None if Yvar is None else cat(self.train_Yvar, Yvar),
        )

    def _new_noise(
        self, X: Tensor, Y: Tensor, noise: Tensor | None, batch: torch.Size
    ) -> Tensor | None:
        """Known noise of new points, in original units (None for an inferred-noise model)."""
        if self.train_Yvar is None:
            if noise is not None:
                warnings.warn(
                    "TNPKRModel infers the observation noise of this history (no train_Yvar), "
                    "so the noise given for the new observations is not used.",
                    UserWarning,
                    stacklevel=3,
                )
            return None
        shape = torch.Size([*batch, *Y.shape[-2:]])
        if noise is None:
            return self.train_Yvar.mean(dim=-2, keepdim=True).expand(shape)
        check_finite("noise", noise)
        if bool((noise < 0).any()):
            raise InputDataError("noise contains negative variances.")
        try:
            noise = noise.to(Y).expand(*Y.shape)
        except RuntimeError as err:
            raise BotorchTensorDimensionError(
                f"noise of shape {tuple(noise.shape)} does not broadcast to Y {tuple(Y.shape)}."
            ) from err
        if not hasattr(self, "outcome_transform"):
            return noise
        X_tf = X
        if hasattr(self, "input_transform"):
            X_tf = self.input_transform.preprocess_transform(X)
        Y_tf, _ = self.outcome_transform(Y, X=X_tf)
        _, Yvar = self.outcome_transform.untransform(Y_tf, noise, X=X_tf)
        return Yvar

    def subset_output(self, idcs: list[int]) -> TNPKRModel:
        r"""A model of the outputs ``idcs`` only (same network, re-encoded history)."""
        idcs = check_output_indices(idcs, self.num_outputs)
        outcome_transform = getattr(self, "outcome_transform", None)
        if outcome_transform is not None:
            outcome_transform = outcome_transform.subset_output(idcs)
        Yvar = None if self.train_Yvar is None else self.train_Yvar[..., idcs]
        return self._derive(
            self.train_X, self.train_Y[..., idcs], Yvar, outcome_transform, outputs=idcs
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def construct_inputs(cls, training_data: SupervisedDataset, **kwargs: Any) -> dict[str, Any]:
        r"""Constructor arguments from a ``SupervisedDataset`` (``Yvar`` included).

        Args:
            training_data: The data; its ``Yvar``, if any, becomes ``train_Yvar``.
            kwargs: Constructor options (``checkpoint``, ``linear_above``, ``scan_above``,
                transforms), passed through. Ax's ``categorical_features`` is ignored
                (one-hot columns are ordinary inputs); ``fidelity_features`` and
                ``task_feature`` raise ``UnsupportedError``.
        """
        if not isinstance(training_data, SupervisedDataset):
            raise TypeError(
                "Expected `training_data` to be a `SupervisedDataset`, got "
                f"{type(training_data).__name__}."
            )
        for key in _AX_UNSUPPORTED:
            if kwargs.get(key) not in (None, [], {}):
                raise UnsupportedError(
                    f"TNPKRModel has no notion of {key} (got {kwargs[key]!r}); use a "
                    "multi-fidelity or multi-task GP for such problems."
                )
        options = {k: v for k, v in kwargs.items() if k not in _AX_IGNORED + _AX_UNSUPPORTED}
        allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "train_X", "train_Y"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise UnsupportedError(
                f"Unknown TNPKRModel options {unknown}; allowed: {sorted(allowed)}."
            )
        inputs: dict[str, Any] = {"train_X": training_data.X, "train_Y": training_data.Y}
        if training_data.Yvar is not None:
            inputs["train_Yvar"] = training_data.Yvar
        inputs.update(options)
        return inputs

    def __repr__(self) -> str:
        n, d = self.train_X.shape[-2:]
        return (
            f"{self.__class__.__name__}(n={n}, d={d}, m={self.num_outputs}, "
            f"batch_shape={tuple(self.batch_shape)}, checkpoint={self._source!r}, "
            f"attention={self.network.config.attention!r})"
        )


__all__ = ["TNPKRModel"]
