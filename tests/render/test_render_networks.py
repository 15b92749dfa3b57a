"""pix2pixHD networks, losses and presets: shapes, ranges, loss behaviour, a learning step."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")

from render_helpers import save_checkpoint, tiny_renderer_config  # noqa: E402

from anchor.config import AnchorConfig, RendererConfig, to_dict  # noqa: E402
from anchor.errors import ConfigError, RenderError  # noqa: E402
from anchor.render.losses import (  # noqa: E402
    discriminator_loss,
    feature_matching_loss,
    lsgan_loss,
)
from anchor.render.networks import (  # noqa: E402
    GlobalGenerator,
    LocalEnhancer,
    MouthCropDiscriminator,
    MultiscaleDiscriminator,
    build_generator,
    crop_regions,
    load_generator,
    mouth_crop_size,
)
from anchor.render.presets import preset_names, renderer_preset  # noqa: E402


def _maps(cfg: RendererConfig, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, cfg.input_nc, cfg.resolution, cfg.resolution, generator=g) * 2 - 1


def test_presets_cover_cpu_and_paper_and_default_is_cpu_small() -> None:
    assert {"cpu-small", "paper-512"} <= set(preset_names())
    paper = renderer_preset("paper-512")
    assert (paper.resolution, paper.ngf, paper.n_downsample, paper.n_blocks) == (512, 64, 4, 9)
    assert not paper.local_enhancer
    # RendererConfig() defaults are the cpu-small preset, so an unconfigured avatar streams on CPU
    assert renderer_preset("cpu-small") == RendererConfig()
    assert renderer_preset("cpu-small", resolution=64).resolution == 64
    with pytest.raises(ConfigError, match="unknown renderer preset"):
        renderer_preset("nope")


@pytest.mark.parametrize("name", ["cpu-small", "cpu-256", "gpu-256", "paper-512"])
def test_generator_shape_of_each_preset_scaled_down(name: str) -> None:
    # keep each preset's depth (downsamplings, blocks) but shrink width and size for speed
    preset = renderer_preset(name)
    res = 2 ** (preset.n_downsample + 1)
    cfg = dataclasses.replace(preset, ngf=2, resolution=res)
    gen = build_generator(cfg)
    assert isinstance(gen, GlobalGenerator)
    x = _maps(cfg)
    with torch.no_grad():
        y = gen(x)
    assert y.shape == (2, cfg.output_nc, res, res)
    assert float(y.abs().max()) <= 1.0  # tanh output


def test_global_generator_widths_follow_ngf_and_downsampling() -> None:
    cfg = tiny_renderer_config(ngf=3, n_downsample=3, n_blocks=2, resolution=32)
    gen = GlobalGenerator(cfg)
    convs = [m for m in gen.modules() if isinstance(m, torch.nn.Conv2d)]
    # the stem is ngf wide and the bottleneck ngf * 2^n_downsample
    assert convs[0].out_channels == 3
    assert max(c.out_channels for c in convs) == 3 * 2**3
    ups = [m for m in gen.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(ups) == 3


def test_local_enhancer_full_resolution_output() -> None:
    cfg = tiny_renderer_config(local_enhancer=True)
    gen = build_generator(cfg)
    assert isinstance(gen, LocalEnhancer)
    with torch.no_grad():
        y = gen(_maps(cfg))
    assert y.shape == (2, 3, cfg.resolution, cfg.resolution)


def test_resolution_must_be_divisible() -> None:
    with pytest.raises(RenderError, match="multiple of 4"):
        build_generator(tiny_renderer_config(resolution=30))
    with pytest.raises(RenderError, match="local enhancer"):
        build_generator(tiny_renderer_config(resolution=36, local_enhancer=True))


def test_multiscale_discriminator_returns_features_per_scale() -> None:
    cfg = tiny_renderer_config(num_d=3, n_layers_d=2, resolution=64)
    disc = MultiscaleDiscriminator(cfg)
    x = torch.cat([_maps(cfg), _maps(cfg, seed=1)], dim=1)
    out = disc(x)
    assert len(out) == 3
    for scale in out:
        assert len(scale) == cfg.n_layers_d + 2  # intermediate features + prediction
        assert scale[-1].shape[1] == 1
    # each scale sees a half-resolution image: its patch map is smaller
    sizes = [scale[-1].shape[-1] for scale in out]
    assert sizes[0] > sizes[1] > sizes[2]


def test_mouth_crop_discriminator_on_crops() -> None:
    cfg = tiny_renderer_config(resolution=128)
    size = mouth_crop_size(cfg.resolution)
    images = torch.cat([_maps(cfg), _maps(cfg, seed=1)], dim=1)
    centers = torch.tensor([[64.0, 96.0], [2.0, 127.0]])  # the second is clamped inside
    crops = crop_regions(images, centers, size)
    assert crops.shape == (2, 6, size, size)
    assert torch.equal(crops[0], images[0, :, 96 - size // 2 : 96 + size // 2, 64 - size // 2 : 64 + size // 2])
    assert torch.equal(crops[1], images[1, :, 128 - size :, :size])
    feats = MouthCropDiscriminator(cfg)(crops)
    assert feats[-1].shape[:2] == (2, 1)


def test_lsgan_loss_is_zero_at_its_target_and_one_at_the_other() -> None:
    ones = [[torch.randn(2, 4, 5, 5), torch.ones(2, 1, 5, 5)]]
    zeros = [[torch.randn(2, 4, 5, 5), torch.zeros(2, 1, 5, 5)]]
    assert float(lsgan_loss(ones, True)) == 0.0
    assert float(lsgan_loss(zeros, False)) == 0.0
    assert float(lsgan_loss(ones, False)) == pytest.approx(1.0)
    # scales add up; a bare tensor and a single feature list are accepted too
    two_scales = ones + ones
    assert float(lsgan_loss(two_scales, False)) == pytest.approx(2.0)
    assert float(lsgan_loss(torch.full((3, 1, 4, 4), 0.5), True)) == pytest.approx(0.25)
    assert float(lsgan_loss(ones[0], False)) == pytest.approx(1.0)
    assert float(discriminator_loss(ones, zeros)) == 0.0


def test_feature_matching_zero_for_equal_features_and_detaches_real() -> None:
    cfg = tiny_renderer_config()
    disc = MultiscaleDiscriminator(cfg)
    real_in = torch.cat([_maps(cfg), _maps(cfg, seed=1)], 1).requires_grad_(True)
    fake_in = torch.cat([_maps(cfg), _maps(cfg, seed=2)], 1).requires_grad_(True)
    real, fake = disc(real_in), disc(fake_in)
    same = feature_matching_loss(real, real, cfg.num_d, cfg.n_layers_d)
    assert float(same.detach()) == 0.0
    loss = feature_matching_loss(fake, real, cfg.num_d, cfg.n_layers_d)
    assert float(loss.detach()) > 0.0
    loss.backward()
    assert fake_in.grad is not None and float(fake_in.grad.abs().sum()) > 0
    assert real_in.grad is None  # only the generator side learns from feature matching


def test_one_generator_step_reduces_l1() -> None:
    torch.manual_seed(0)
    cfg = tiny_renderer_config()
    gen = build_generator(cfg)
    opt = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x, target = _maps(cfg, 4, seed=3), _maps(cfg, 4, seed=4).clamp(-0.9, 0.9)
    before = torch.nn.functional.l1_loss(gen(x), target)
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = torch.nn.functional.l1_loss(gen(x), target)
    assert float(after) < float(before.detach())


def test_load_generator_round_trip(tmp_path: Path) -> None:
    cfg = tiny_renderer_config()
    path = save_checkpoint(cfg, tmp_path / "ck.pt", seed=5)
    gen, loaded = load_generator(path)
    assert loaded == cfg
    assert not gen.training
    torch.manual_seed(5)
    ref = build_generator(cfg).eval()
    x = _maps(cfg)
    with torch.no_grad():
        assert torch.equal(gen(x), ref(x))


def test_load_generator_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="does not exist"):
        load_generator(tmp_path / "missing.pt")
    torch.save({"generator": {}}, tmp_path / "nocfg.pt")
    with pytest.raises(RenderError, match="not a renderer checkpoint"):
        load_generator(tmp_path / "nocfg.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RenderError, match="cannot read"):
        load_generator(tmp_path / "junk.pt")
    # weights of one shape under a config of another
    small = tiny_renderer_config()
    gen = build_generator(small)
    cfg = dataclasses.replace(AnchorConfig(), renderer=tiny_renderer_config(ngf=8))
    torch.save({"config": to_dict(cfg), "generator": gen.state_dict()}, tmp_path / "bad.pt")
    with pytest.raises(RenderError, match="do not match"):
        load_generator(tmp_path / "bad.pt")
