"""Losses: each one an ``nn.Module`` holding its settings, with its functional form beside it
in the same module (the module's ``forward`` takes the function's arguments less the settings).

- ``contrastive``: :class:`NTXentLoss` / :func:`nt_xent` (SimCLR's NT-Xent)
- ``supcon``: :class:`SupConLoss` / :func:`supcon_loss` (supervised contrastive)
- ``triplet``: :class:`CosineTripletLoss` / :func:`cosine_triplet_loss` (explicit triplets),
  :class:`MinedTripletLoss` / :func:`mined_triplet_loss` (mined in a labelled batch)
- ``redundancy``: :class:`BarlowTwinsLoss` / :func:`barlow_twins_loss`,
  :class:`VICRegLoss` / :func:`vicreg_loss`, :class:`BYOLRegressionLoss` /
  :func:`byol_regression_loss`
- ``regularisers``: :class:`VariancePenalty` / :func:`variance_penalty`,
  :class:`CovariancePenalty` / :func:`covariance_penalty` (VICReg's terms, RDINO)
- ``dino_loss``: :class:`DINOLoss` (holds the centre) / :func:`dino_distillation_loss`
- ``margin``: :class:`SoftmaxClassifier` / :func:`softmax_classifier_loss`,
  :class:`AAMSoftmax` / :func:`aam_softmax_loss` (classification heads: the modules hold the
  class weights)
- ``masked``: :class:`MaskedReconstructionLoss` / :func:`masked_reconstruction_loss`,
  :class:`SpanContrastiveLoss` / :func:`span_info_nce` (MGF)
- ``unit_prediction``: :class:`MaskedClusterLoss` / :func:`masked_cluster_loss` (HuBERT)
- ``club``: :class:`CLUB` (holds ``q``) / :func:`club_estimate`,
  :func:`gaussian_log_likelihood` (mutual-information upper bound)

Helpers stay in their modules: ``distributed`` (``gather_with_grad``, ``global_mean``,
``is_distributed``: losses over the global batch under DDP), ``precision``
(``float32_loss``), ``masked`` (``spans_of_mask``, ``pool_spans``, ``sample_negatives``),
``triplet`` (``mine_triplets``), ``dino_loss`` (``collapse_statistics``). The k-means codebook
that gives ``masked_cluster_loss`` its targets is a fitted model:
:mod:`paravox.models.codebook`.
"""

from paravox.objectives.club import CLUB, club_estimate, gaussian_log_likelihood
from paravox.objectives.contrastive import NTXentLoss, nt_xent
from paravox.objectives.dino_loss import DINOLoss, dino_distillation_loss
from paravox.objectives.margin import (
    AAMSoftmax,
    SoftmaxClassifier,
    aam_softmax_loss,
    softmax_classifier_loss,
)
from paravox.objectives.masked import (
    MaskedReconstructionLoss,
    SpanContrastiveLoss,
    masked_reconstruction_loss,
    span_info_nce,
)
from paravox.objectives.redundancy import (
    BarlowTwinsLoss,
    BYOLRegressionLoss,
    VICRegLoss,
    barlow_twins_loss,
    byol_regression_loss,
    vicreg_loss,
)
from paravox.objectives.regularisers import (
    CovariancePenalty,
    VariancePenalty,
    covariance_penalty,
    variance_penalty,
)
from paravox.objectives.supcon import SupConLoss, supcon_loss
from paravox.objectives.triplet import (
    CosineTripletLoss,
    MinedTripletLoss,
    cosine_triplet_loss,
    mined_triplet_loss,
)
from paravox.objectives.unit_prediction import MaskedClusterLoss, masked_cluster_loss

__all__ = [
    "AAMSoftmax", "BYOLRegressionLoss", "BarlowTwinsLoss", "CLUB", "CosineTripletLoss",
    "CovariancePenalty", "DINOLoss", "MaskedClusterLoss", "MaskedReconstructionLoss",
    "MinedTripletLoss", "NTXentLoss", "SoftmaxClassifier", "SpanContrastiveLoss", "SupConLoss",
    "VICRegLoss", "VariancePenalty", "aam_softmax_loss", "barlow_twins_loss",
    "byol_regression_loss", "club_estimate", "cosine_triplet_loss", "covariance_penalty",
    "dino_distillation_loss", "gaussian_log_likelihood", "masked_cluster_loss",
    "masked_reconstruction_loss", "mined_triplet_loss", "nt_xent", "softmax_classifier_loss",
    "span_info_nce", "supcon_loss", "variance_penalty", "vicreg_loss",
]
