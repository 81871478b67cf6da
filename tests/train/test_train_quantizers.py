"""Quantizers: forward values and backward rules against hand-computed numbers.

All expected values here are exact in float32 (powers of two, small integers, or computed with
the same float32 operations), so comparisons are exact unless a comment says otherwise.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from qcompile.train.quantizers import ActQuantizer, WeightQuantizer, bcgd_alpha_init, qonnx_quant


def _fwd_bwd(mod, x, g=None):
    x = x.clone().requires_grad_(True)
    y = mod(x)
    y.backward(torch.ones_like(y) if g is None else g)
    return y.detach(), x.grad


def t(*v):
    return torch.tensor(v, dtype=torch.float32)


# --- binary STE ------------------------------------------------------------------------------
def test_binary_ste_activation():
    x = t(-2.0, -1.0, -0.0, 0.0, 0.5, 1.0, 2.0)
    y, gx = _fwd_bwd(ActQuantizer("h", 1, "ste").train(), x)
    assert torch.equal(y, t(-1, -1, 1, 1, 1, 1, 1))  # −0.0 → +1
    assert torch.equal(gx, t(0, 1, 1, 1, 1, 1, 0))  # clip boundaries ±1 pass the gradient


def test_binary_ste_weight():
    w = t(-1.5, -1.0, -0.0, 0.0, 0.25, 1.0, 1.01)
    y, gw = _fwd_bwd(WeightQuantizer("h", 1, "ste").train(), w)
    assert torch.equal(y, t(-1, -1, 1, 1, 1, 1, 1))
    assert torch.equal(gw, t(0, 1, 1, 1, 1, 1, 0))


# --- XNOR / BWN ------------------------------------------------------------------------------
def test_bwn_per_channel_scale():
    w = torch.tensor([[0.5, -1.5, 1.0, -1.0], [0.25, -0.25, -0.0, 0.5]])
    y, gw = _fwd_bwd(WeightQuantizer("bwn", 1).train(), w)
    # α_0 = mean(0.5, 1.5, 1, 1) = 1, α_1 = mean(.25, .25, 0, .5) = 0.25; sign(−0.0) = +1
    assert torch.equal(y, torch.tensor([[1.0, -1.0, 1.0, -1.0], [0.25, -0.25, 0.25, 0.25]]))
    assert torch.equal(gw, torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))


# --- TWN -------------------------------------------------------------------------------------
def test_twn_per_layer():
    w = t(0.125, -0.25, 0.875, -1.0)  # mean|W| = 0.5625, Δ = 0.39375
    y, gw = _fwd_bwd(WeightQuantizer("twn", 2).train(), w)
    alpha = (0.875 + 1.0) / 2  # mean of |W| above Δ
    assert torch.equal(y, t(0, 0, alpha, -alpha))
    assert torch.equal(gw, torch.ones(4))  # identity STE


def test_twn_per_channel():
    w = torch.tensor([[0.125, -0.25, 0.875, -1.0], [0.5, 0.5, 0.5, -0.5]])
    y, _ = _fwd_bwd(WeightQuantizer("twn", 2, per_channel=True).train(), w)
    # row 1: Δ = 0.35, all above, α = 0.5
    assert torch.equal(y, torch.tensor([[0, 0, 0.9375, -0.9375], [0.5, 0.5, 0.5, -0.5]]))


# --- DoReFa ----------------------------------------------------------------------------------
def test_dorefa_weight_2bit():
    w = t(-2.0, -0.3, 0.0, 0.1, 0.7)
    y, gw = _fwd_bwd(WeightQuantizer("dorefa", 2).train(), w)
    th = torch.tanh(w)
    z = th / (2 * th.abs().max()) + 0.5
    ref = 2 * torch.round(3 * z) / 3 - 1
    # the quantizer computes (2i − 3)·float32(1/3) so that QONNX Quant reproduces it exactly;
    # the textbook form divides by 3 instead: the two differ by at most 1 ulp.
    assert torch.allclose(y, ref, rtol=0, atol=2e-7)
    assert set(torch.round(y * 3).tolist()) <= {-3.0, -1.0, 1.0, 3.0}
    assert torch.allclose(gw, (1 - th * th) / th.abs().max(), rtol=1e-6)


def test_dorefa_activation_2bit():
    x = t(-0.5, 0.0, 0.2, 0.4, 0.9, 1.0, 1.5)
    y, gx = _fwd_bwd(ActQuantizer("dorefa", 2).train(), x)
    s = torch.tensor(1.0 / 3)
    assert torch.equal(y, torch.stack([0 * s, 0 * s, s, s, 3 * s, 3 * s, 3 * s]))
    assert torch.equal(gx, t(0, 1, 1, 1, 1, 1, 0))


# --- AQE -------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.5, 0.8])
def test_aqe_blend_activation_and_grad(alpha):
    x = t(-2.0, -1.0, -0.0, 0.25, 1.0, 2.0)
    q = ActQuantizer("h", 1, "aqe-blend", alpha=alpha).train()
    y, gx = _fwd_bwd(q, x)
    h = t(-1, -1, 1, 1, 1, 1)
    clipped = t(-1.0, -1.0, -0.0, 0.25, 1.0, 1.0)
    assert torch.equal(y, alpha * h + (1 - alpha) * clipped)
    assert torch.equal(gx, 2 * alpha * t(0, 1, 1, 1, 1, 0))
    q.eval()
    assert torch.equal(q(x), h)  # inference: h alone


def test_aqe_blend_weight():
    w = t(-1.5, -0.5, -0.0, 0.75)
    y, gw = _fwd_bwd(WeightQuantizer("h", 1, "aqe-blend", alpha=0.25).train(), w)
    assert torch.equal(y, 0.25 * t(-1, -1, 1, 1) + 0.75 * w)
    assert torch.equal(gw, 0.5 * t(0, 1, 1, 1))


def test_aqe_ternary_activation():
    x = t(-0.7, -0.5, -0.0, 0.5, 0.51, 3.0)
    y = ActQuantizer("h", 2).eval()(x)
    assert torch.equal(y, t(-1, 0, 0, 0, 1, 1))  # |x| ≤ Δ = ½ → 0


def test_aqe_ternary_weight_uses_twn_delta():
    w = t(0.125, -0.25, 0.875, -1.0)  # Δ = 0.7·0.5625
    assert torch.equal(WeightQuantizer("h", 2).eval()(w), t(0, 0, 1, -1))


def test_aqe_3bit_power_of_two_levels():
    # levels {0, ±¼, ±½, ±1}; thresholds 2^-2.5 ≈ 0.177, 2^-1.5 ≈ 0.354, 2^-0.5 ≈ 0.707
    x = t(0.1, 0.18, 0.3, 0.36, 0.7, 0.71, 1.0, -0.4, -0.0)
    y = ActQuantizer("h", 3).eval()(x)
    assert torch.equal(y, t(0, 0.25, 0.25, 0.5, 0.5, 1, 1, -0.5, 0))
    xt = torch.tensor(2.0 ** -1.5)  # exactly at the float32 threshold: the larger level
    assert float(ActQuantizer("h", 3).eval()(xt)) == 0.5


def test_aqe_4bit_levels():
    x = torch.linspace(-1, 1, 2001)
    y = ActQuantizer("h", 4).eval()(x)
    levels = {0.0} | {s * 2.0**-p for p in range(7) for s in (1, -1)}  # q = 7
    assert set(y.tolist()) <= levels


# --- BCGD ------------------------------------------------------------------------------------
def test_bcgd_quantized_relu():
    q = ActQuantizer("bcgd", 2, bcgd_alpha=0.5).train()  # L = 3, (L−1)α = 1, Lα = 1.5
    x = t(-1.0, 0.0, 0.2, 0.5, 0.6, 1.0, 1.2, 1.5, 2.0)
    y, gx = _fwd_bwd(q, x)
    assert torch.equal(y, t(0, 0, 0.5, 0.5, 1.0, 1.0, 1.5, 1.5, 1.5))
    assert torch.equal(gx, t(0, 0, 1, 1, 1, 1, 1, 1, 0))
    # ∂σ/∂α = ⌈x/α⌉ inside, L above: 0+0+1+1+2+2+3+3+3 = 15, scaled by 0.01
    assert math.isclose(float(q.bcgd_alpha.grad), 0.15, rel_tol=1e-6)


def test_bcgd_alpha_grad_clipped_and_alpha_clamped():
    q = ActQuantizer("bcgd", 2, bcgd_alpha=0.5).train()
    _fwd_bwd(q, t(2.0, 3.0), g=t(100.0, 100.0))  # 0.01·(300+300) = 6 → clipped to 1
    assert float(q.bcgd_alpha.grad) == 1.0
    _fwd_bwd(q.zero_grad() or q, t(2.0), g=t(-1000.0))
    assert float(q.bcgd_alpha.grad) == -1.0
    with torch.no_grad():
        q.bcgd_alpha.fill_(10.0)
    q.clamp_alpha_()
    assert float(q.bcgd_alpha.detach()) == 5.0
    with torch.no_grad():
        q.bcgd_alpha.fill_(1e-5)
    q.clamp_alpha_()
    assert float(q.bcgd_alpha.detach()) == pytest.approx(1e-3)


@pytest.mark.parametrize("alpha", [1e-3, 5.0])
def test_bcgd_at_alpha_bounds(alpha):
    q = ActQuantizer("bcgd", 2, bcgd_alpha=alpha).eval()
    a = torch.tensor(alpha)
    x = torch.stack([-a, 0.5 * a, 1.5 * a, 2.5 * a, 10 * a])
    ref = torch.stack([0 * a, a, 2 * a, 3 * a, 3 * a])
    assert torch.allclose(q(x), ref, rtol=1e-6, atol=0)  # 1.5·a/a may round by 1 ulp
    # and it is QONNX Quant(x, α, 0, b, signed=0, CEIL), bit for bit
    assert torch.equal(q(x), qonnx_quant(x, q.bcgd_alpha.detach(), 0.0, 2, False, False, "CEIL"))


def test_bcgd_alpha_init():
    assert [bcgd_alpha_init(b) for b in (1, 2, 4)] == [1.2221, 0.6511, 0.1946]
    assert bcgd_alpha_init(3) == pytest.approx(math.sqrt(0.6511 * 0.1946))
    assert float(ActQuantizer("bcgd", 4).bcgd_alpha.detach()) == pytest.approx(0.1946)


def test_bcgd_weights_coarse_gradient():
    w = t(0.5, -1.5, 0.25, -0.25)
    y, gw = _fwd_bwd(WeightQuantizer("bcgd", 1).train(), w)
    assert torch.equal(y, 0.625 * t(1, -1, 1, -1))
    assert torch.equal(gw, torch.ones(4))


def test_disabled_quantizer_is_identity_or_nonlinearity():
    w = t(0.3, -0.2)
    wq = WeightQuantizer("h", 1)
    wq.enabled = False
    assert torch.equal(wq(w), w)
    aq = ActQuantizer("h", 32)
    assert torch.equal(aq(t(-2.0, 0.5)), t(-1.0, 0.5))


# --- AQE: the smooth estimator ----------------------------------------------------------------
def _closed_form(x, bits, delta, k):
    """ĥ_k and its derivative written out per bit width (1: tanh; 2: two tanh steps; 3: the
    three steps of {0, 1/4, 1/2, 1} at the log-midpoint thresholds)."""
    th = torch.tanh
    if bits == 1:
        return th(k * x), k * (1 - th(k * x) ** 2)
    if bits == 2:
        f = 0.5 * (th(k * (x - delta)) + th(k * (x + delta)))
        g = 0.5 * k * (2 - th(k * (x - delta)) ** 2 - th(k * (x + delta)) ** 2)
        return f, g
    f = torch.zeros_like(x)
    g = torch.zeros_like(x)
    for t_j, d_j in ((2 ** -2.5, 0.25), (2 ** -1.5, 0.25), (2 ** -0.5, 0.5)):
        a, b = th(k * (x - t_j)), th(k * (x + t_j))
        f = f + d_j / 2 * (a + b)
        g = g + d_j / 2 * k * (2 - a * a - b * b)
    return f, g


@pytest.mark.parametrize("bits", [1, 2, 3])
@pytest.mark.parametrize("k", [1.0, 7.5])
def test_aqe_smooth_forward_and_backward_match_closed_form(bits, k):
    from qcompile.train.quantizers import aqe_smooth

    x = torch.linspace(-1.3, 1.3, 101, dtype=torch.float64, requires_grad=True)
    y = aqe_smooth(x, bits, 0.4, k)
    (g,) = torch.autograd.grad(y.sum(), x)
    f_ref, g_ref = _closed_form(x.detach(), bits, 0.4, k)
    assert torch.allclose(y, f_ref, rtol=0, atol=1e-12)  # float64 rounding only
    assert torch.allclose(g, g_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_aqe_smooth_gradient_is_its_true_derivative(bits):
    """Finite differences in float64 (gradcheck: central differences, eps 1e-6)."""
    from qcompile.train.quantizers import aqe_smooth

    x = torch.linspace(-1.1, 1.1, 23, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: aqe_smooth(v, bits, 0.35, 4.0), (x,))


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_aqe_smooth_converges_to_h_as_sharpness_grows(bits):
    from qcompile.train.quantizers import aqe_h, aqe_smooth, h_steps

    x = torch.linspace(-1.2, 1.2, 2001, dtype=torch.float64)
    ts = [float(t) for t in h_steps(bits, 0.5)[0]]
    away = torch.stack([(x.abs() - t).abs() for t in ts]).min(0).values > 0.02  # off thresholds
    errs = [(aqe_smooth(x, bits, 0.5, k) - aqe_h(x, bits, 0.5))[away].abs().max().item()
            for k in (1.0, 10.0, 100.0, 1000.0)]
    assert all(a > b for a, b in itertools.pairwise(errs))
    assert errs[-1] < 1e-6


def test_aqe_activation_trains_on_the_surrogate_and_evaluates_h():
    x = t(-2.0, -0.6, -0.1, 0.0, 0.3, 0.9, 1.5).double()
    q = ActQuantizer("h", 2, "aqe", act_delta=0.5, sharpness=3.0).train()
    y, gx = _fwd_bwd(q, x)
    f, g = _closed_form(x.clamp(-1, 1), 2, 0.5, 3.0)
    inside = (x.abs() <= 1).double()  # HardTanh's derivative
    assert torch.allclose(y, f, rtol=0, atol=1e-12)
    assert torch.allclose(gx, g * inside, rtol=0, atol=1e-12)
    assert torch.equal(q.eval()(x), t(-1, -1, 0, 0, 0, 1, 1).double())


def test_aqe_weight_surrogate_in_units_of_the_layer():
    """1 bit: tanh(k·W/mean|W|), the unit held constant in the backward pass."""
    w = t(-0.08, -0.02, 0.01, 0.05).double()
    k = 2.0
    y, gw = _fwd_bwd(WeightQuantizer("h", 1, "aqe", sharpness=k).train(), w)
    unit = w.abs().mean()
    assert torch.allclose(y, torch.tanh(k * w / unit), rtol=0, atol=1e-12)
    assert torch.allclose(gw, k / unit * (1 - torch.tanh(k * w / unit) ** 2), rtol=0, atol=1e-9)


def test_pow2_weights_use_every_level_at_initialisation():
    """MINW-Net 3-bit weights at init: with the per-layer scale S no layer is dead; each of
    the 7 levels S·{0, ±1/4, ±1/2, ±1} holds a real share of the weights of every layer."""
    from qcompile.train.layers import weight_quantizers
    from qcompile.train.models import build_model
    from qcompile.train.quantizers import pow2_unit

    torch.manual_seed(0)
    model, _ = build_model("convnet", (1, 28, 28), 10, wbits=3, abits=3, method="aqe")
    layers = weight_quantizers(model)
    assert len(layers) == 7
    for _, layer in layers:
        q = layer.wq.quantized_value(layer.weight)
        s = pow2_unit(layer.weight)
        assert torch.log2(s) == torch.round(torch.log2(s))
        levels, counts = torch.unique(q / s, return_counts=True)
        assert levels.tolist() == [-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0]
        share = counts / counts.sum()
        assert share.min() > 0.05 and share.max() < 0.35, share
    # the paper's scale-free h at the same init: everything is 0 (the dead start this avoids)
    torch.manual_seed(0)
    model, _ = build_model("convnet", (1, 28, 28), 10, wbits=3, abits=3, method="aqe",
                           pow2_scale="none")
    for _, layer in weight_quantizers(model):
        assert torch.count_nonzero(layer.wq.quantized_value(layer.weight)) == 0
