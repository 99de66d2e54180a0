"""NormalEstimator: the two stages together, for inference.

    estimator = NormalEstimator.from_official("ExemplarModel.pkl", "RefinerModel.pt")
    normals = estimator(gray)            # B x 1 x 256 x 256 in [0, 1] -> B x 3 x 256 x 256 unit

BEYOND THE PAPER: with ``estimator.fitting = FitSettings(...)`` (hffne_lib.fitting) the normals
``predict`` returns are each face's exemplar fitted to its own photo, in place of the refiner's.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from .checkpoint import load_coarse, load_refiner
from .config import checked_device
from .coarse import UNetGenerator
from .fitting import FitSettings, fit_normals
from .official import CheckpointError, load_official_coarse, load_official_refiner
from .refiner import Refiner

if TYPE_CHECKING:  # hffne_lib.predict imports this module
    import numpy as np

    from .predict import Prediction

#: Provenance "vgg_weights" of an estimator without refiner (``NormalEstimator.from_checkpoints``).
NO_REFINER_VGG = "none (no refiner)"


class NormalEstimator(nn.Module):
    """Coarse exemplar G(I) then refinement phi(I, G(I)); eval mode, no gradients. BEYOND THE
    PAPER: ``fitting`` (None: off) makes ``fit`` available and ``predict`` use it; with fitting,
    the refiner may be None (a coarse checkpoint alone: ``refine`` then raises)."""

    def __init__(self, coarse: UNetGenerator, refiner: Refiner | None, provenance: dict | None = None,
                 fitting: FitSettings | None = None):
        super().__init__()
        self.coarse_net = coarse
        self.refiner = refiner
        self.provenance = dict(provenance or {})
        self.fitting = fitting
        self.eval()

    @classmethod
    def from_official(cls, exemplar_path: str | os.PathLike, refiner_path: str | os.PathLike,
                      device: str | torch.device = "cpu", test_time_dropout: bool = False) -> "NormalEstimator":
        """The authors' released models (ExemplarModel.pkl, RefinerModel.pt), strictly loaded.

        ``test_time_dropout=True`` keeps the coarse U-Net's dropout on at inference, as the
        release's code does (its outputs are then random); the default turns it off.
        """
        coarse = load_official_coarse(exemplar_path, test_time_dropout)
        refiner = load_official_refiner(refiner_path)
        provenance = {"weights": "official", "exemplar_path": str(exemplar_path),
                      "refiner_path": str(refiner_path), "vgg_weights": refiner.vgg.weight_source,
                      "test_time_dropout": test_time_dropout}
        return cls(coarse, refiner, provenance).to(checked_device(device))

    @classmethod
    def from_checkpoints(cls, coarse_path: str | os.PathLike, refiner_path: str | os.PathLike | None = None,
                         device: str | torch.device = "cpu", fitting: FitSettings | None = None,
                         exemplar_only: bool = False) -> "NormalEstimator":
        """Our training checkpoints (hffne_lib.train): coarse/latest.pt (or a milestone) and a
        refiner's latest.pt, checked to share one resolution; provenance from both files.
        A coarse checkpoint alone (``refiner_path`` None) needs ``exemplar_only`` (the estimator
        gives exemplars only: ``coarse``, and evaluate's stage coarse) or, BEYOND THE PAPER,
        ``fitting`` (the exemplar is fitted to each image); else it raises CheckpointError."""
        coarse, coarse_ckpt = load_coarse(coarse_path)
        if refiner_path is None and fitting is None and not exemplar_only:
            raise CheckpointError(f"{coarse_path}: a coarse checkpoint alone has no refiner: give the refiner's "
                                  f"checkpoint too, or fit the exemplar to each image instead (--fit-steps N, "
                                  f"beyond the paper)")
        refiner, refiner_ckpt = (None, coarse_ckpt) if refiner_path is None else \
            load_refiner(refiner_path, resolution=coarse_ckpt["resolution"])
        provenance = {"weights": "trained", "exemplar_path": str(coarse_path),
                      "refiner_path": None if refiner_path is None else str(refiner_path),
                      "vgg_weights": NO_REFINER_VGG if refiner is None else refiner_ckpt["vgg_weight_source"],
                      "resolution": coarse_ckpt["resolution"], "coarse_iteration": coarse_ckpt["iteration"],
                      "refiner_iteration": None if refiner is None else refiner_ckpt["iteration"],
                      "git_revision": refiner_ckpt["git_revision"], "manifest_hash": refiner_ckpt["manifest_hash"]}
        return cls(coarse, refiner, provenance, fitting).to(checked_device(device))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _check_gray(self, gray: torch.Tensor) -> torch.Tensor:
        if gray.dim() != 4 or gray.shape[1] != 1:
            raise ValueError(f"expected grey images B x 1 x H x W, got shape {tuple(gray.shape)}")
        return gray.to(self.device, torch.float32)

    @torch.no_grad()
    def coarse(self, gray: torch.Tensor) -> torch.Tensor:
        """Coarse exemplar: B x 1 x H x W grey in [0, 1] -> B x 3 x H x W unit normals."""
        return self.coarse_net(self._check_gray(gray))

    @torch.no_grad()
    def refine(self, gray: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """Refined normals from grey images and their exemplars -> B x 3 x H x W unit normals."""
        if self.refiner is None:
            raise ValueError("this estimator has no refiner (a coarse checkpoint alone): fit the exemplar "
                             "instead (estimator.fitting = FitSettings(...); estimator.fit)")
        return self.refiner(self._check_gray(gray), coarse.to(self.device, torch.float32))

    def fit(self, gray: torch.Tensor, coarse: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """BEYOND THE PAPER: each face's exemplar fitted to its grey image (hffne_lib.fitting) with
        ``self.fitting``. gray, mask (face region): B x 1 x H x W; coarse: B x 3 x H x W -> B x 3 x H x W."""
        if self.fitting is None:
            raise ValueError("this estimator has no fitting settings; set estimator.fitting = FitSettings(...)")
        return fit_normals(self.fitting, coarse.to(self.device, torch.float32), self._check_gray(gray),
                           mask.to(self.device, torch.float32))

    @torch.no_grad()
    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        """Both stages: B x 1 x H x W grey in [0, 1] -> B x 3 x H x W refined unit normals."""
        return self.refine(gray, self.coarse(gray))

    def predict(self, image: str | os.PathLike | np.ndarray, all_faces: bool = False,
                aligned: bool = False) -> Prediction:
        """Normals of the largest face (all faces with ``all_faces``) of a photo: a file path or an
        RGB array (uint8, or float in [0, 1]; grey and RGBA too); ``aligned``: the photo is a face crop already, no
        detection. Returns hffne_lib.predict.Prediction (per-face crops and S x S normals, plus
        3 x H x W normals on the photo's frame); see predict_image."""
        from .data import load_image
        from .predict import predict_image  # hffne_lib.predict imports this module

        if isinstance(image, (str, os.PathLike)):
            image = load_image(image)
        return predict_image(self, image, all_faces, aligned=aligned)
