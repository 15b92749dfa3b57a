"""The generic mouth model that ships: loadable, fits the default config, and is the default
avatar's mouth (what `build-avatar --base-mouth generic` and `--photo` start from)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from anchor.avatar.bundle import default_avatar_path, load_avatar  # noqa: E402
from anchor.build.avatar import generic_mouth_path, resolve_base_mouth  # noqa: E402
from anchor.config import AnchorConfig  # noqa: E402
from anchor.mouth.features import MouthPca  # noqa: E402
from anchor.mouth.models import inference_from_checkpoint, load_checkpoint  # noqa: E402


def test_generic_model_fits_the_default_config_and_is_the_default_avatars_mouth() -> None:
    cfg = AnchorConfig()
    path = resolve_base_mouth("generic", cfg)
    assert path == generic_mouth_path(cfg.mouth_model.kind) and path.is_file()
    ckpt = load_checkpoint(path)
    assert ckpt["optimizer"] is None and float(ckpt["amplitude_gain"]) >= 1.0
    assert len(ckpt["clips"]) >= 40  # many speakers, not one
    basis = MouthPca.load(path.with_suffix(".pca.npz"))
    np.testing.assert_allclose(basis.components, np.asarray(ckpt["pca"]["components"]), atol=1e-6)
    with np.load(path.with_suffix(".shapes.npz")) as z:
        assert z["mean"].shape == (10,) and z["cov"].shape == (10, 10)
    avatar = load_avatar(default_avatar_path())
    np.testing.assert_allclose(avatar.pca.components, basis.components, atol=1e-6)
    module, _, _ = inference_from_checkpoint(path)
    import torch

    with torch.no_grad():
        out = module(torch.zeros(1, cfg.mouth_model.window_in, cfg.mouth_model.n_mfcc))
    assert tuple(out.shape) == (1, cfg.mouth_model.window_out, cfg.mouth_model.pca_dims)
    assert resolve_base_mouth("none", cfg) is None
