"""Training methods: SQ selection, BCGD's blended step, progressive stages, stochastic
precision, joint KD losses, AQE schedule."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qcompile.train import methods as M
from qcompile.train import quantize_model
from qcompile.train.data import load_synthetic
from qcompile.train.layers import QuantLinear, act_quantizers, weight_quantizers
from qcompile.train.quantizers import WeightQuantizer
from qcompile.train.trainer import Trainer


def _mlp(method="ste", wbits=1, abits=1, keep=False):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 12, bias=False), nn.BatchNorm1d(12),
                      nn.Hardtanh(), nn.Linear(12, 4))
    quantize_model(m, wbits, abits, method, keep_first_last_fp=keep)
    return m


# --- SQ --------------------------------------------------------------------------------------
def test_sq_selects_r_m_rows_and_prefers_low_error():
    torch.manual_seed(0)
    m = 8
    layer = QuantLinear(16, m, bias=False, wq=WeightQuantizer("bwn", 1, per_channel=True))
    with torch.no_grad():  # row i: ±1 with a growing spread → growing BWN error
        base = torch.randn(m, 16).sign()
        spread = torch.linspace(0.0, 0.9, m).unsqueeze(1)
        layer.weight.copy_(base * (1 + spread * torch.rand(m, 16)))
    sq = M.StochasticQuantization()
    err = sq.row_errors(layer)
    gen = torch.Generator().manual_seed(1)
    fp_count = torch.zeros(m)
    for _ in range(400):
        mask = sq.select(err, 0.5, gen)
        assert int(mask.sum()) == 4  # N_q = r·m
        fp_count += (~mask).float()
    # rows with larger quantization error stay full precision more often
    order = torch.argsort(err)
    counts = fp_count[order]
    assert counts[-1] > counts[0]
    rank_corr = torch.corrcoef(torch.stack([torch.arange(m).float(),
                                            counts.argsort().argsort().float()]))[0, 1]
    assert rank_corr > 0.8
    assert int(sq.select(err, 0.875, gen).sum()) == 7
    assert bool(sq.select(err, 1.0, gen).all())
    # deterministic ablation: the lowest-error rows
    det = M.StochasticQuantization(stochastic=False).select(err, 0.5, gen)
    assert det.nonzero().flatten().tolist() == sorted(order[:4].tolist())


def test_sq_stages_and_hybrid_forward():
    sq = M.StochasticQuantization()
    assert [sq.ratio_at(s, 8) for s in range(8)] == [0.5, 0.5, 0.75, 0.75, 0.875, 0.875, 1, 1]
    layer = QuantLinear(4, 4, bias=False, wq=WeightQuantizer("bwn", 1)).train()
    layer.wq.sq_mask = torch.tensor([True, False, True, False])
    w = layer.weight.detach()
    out = layer.wq(layer.weight)
    q = layer.wq.quantized_value(w)
    assert torch.equal(out[0], q[0]) and torch.equal(out[1], w[1])
    layer.eval()
    assert torch.equal(layer.wq(layer.weight), q)  # eval: everything quantized


# --- BCGD ------------------------------------------------------------------------------------
def test_bcgd_one_step_is_the_blended_update():
    model = _mlp("bcgd", 1, 2)
    data = load_synthetic(64, 16, shape=(1, 4, 4), num_classes=4)
    lr, mom, wd, rho = 0.1, 0.9, 1e-4, 0.25
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=mom, weight_decay=wd)
    t = Trainer(model, opt, data, batch_size=64, callbacks=[M.BlendedCoarseGradient(rho)],
                progress=False)
    layers = [layer for _, layer in weight_quantizers(model)]
    w0 = [layer.weight.detach().clone() for layer in layers]
    q0 = [layer.wq.quantized_value(layer.weight) for layer in layers]
    # the coarse gradient at Q(w): the same forward/backward done by hand
    ref = _mlp("bcgd", 1, 2)
    ref.load_state_dict(model.state_dict())
    ref.train()
    F.cross_entropy(ref(data.x_train), data.y_train).backward()
    grads = [layer.weight.grad.clone() for _, layer in weight_quantizers(ref)]
    t.train_step(data.x_train, data.y_train)
    for w, q, g, layer in zip(w0, q0, grads, layers, strict=False):
        d = g + wd * w  # SGD: weight decay, first momentum buffer = d
        expect = (1 - rho) * w + rho * q - lr * d
        torch.testing.assert_close(layer.weight.detach(), expect, rtol=1e-5, atol=1e-6)


# --- progressive / stochastic precision ------------------------------------------------------
def _fake_trainer(model, total):
    return SimpleNamespace(model=model, total_steps=total, gen=torch.Generator().manual_seed(0))


def test_progressive_scheme2_bit_widths_change_at_stage_boundaries():
    model = _mlp("progressive2", 1, 1)
    cb = M.ProgressiveScheme2(1, 1)
    assert cb.schedule == [32, 8, 4, 2, 1]
    t = _fake_trainer(model, 10)
    seen = []
    for step in range(10):
        cb.on_batch_begin(t, step)
        wq = weight_quantizers(model)[0][1].wq
        seen.append((wq.bits, act_quantizers(model)[0][1].bits))
    assert seen == [(32, 32)] * 2 + [(8, 8)] * 2 + [(4, 4)] * 2 + [(2, 2)] * 2 + [(1, 1)] * 2
    assert M.ProgressiveScheme2(2, 3).bits_at(9, 10) == (2, 3)
    assert M.ProgressiveScheme2(2, 2).schedule == [32, 8, 4, 2]


def test_progressive_scheme1_weights_first_then_activations():
    model = _mlp("progressive1", 2, 2)
    cb = M.ProgressiveScheme1()
    t = _fake_trainer(model, 10)
    flags = []
    for step in range(10):
        cb.on_batch_begin(t, step)
        flags.append(act_quantizers(model)[0][1].enabled)
        assert weight_quantizers(model)[0][1].wq.active
    assert flags == [False] * 5 + [True] * 5


def test_stochastic_precision_probability_rises():
    model = _mlp("stochastic-precision", 2, 2)
    assert M.StochasticPrecision(final_fraction=0).p_at(5, 11) == 0.75
    cb = M.StochasticPrecision()  # p 0.5 → 1 over the first 75 %, then fully quantized
    assert cb.p_at(0, 12) == 0.5 and cb.p_at(8, 12) == 1.0 and cb.p_at(4, 12) == 0.75
    assert all(cb.p_at(k, 12) == 1.0 for k in range(9, 12))
    t = _fake_trainer(model, 1001)
    early = []
    for step in range(200):
        cb.on_batch_begin(t, step)
        early += cb.last
    frac = sum(early) / len(early)
    assert 0.45 < frac < 0.65  # p ≈ 0.5 … 0.6 over the first steps
    cb.on_batch_begin(t, 1000)
    assert all(cb.last)  # p = 1 at the end
    cb.on_eval_begin(t)
    assert all(u.enabled for u in cb._units(model))


# --- KD --------------------------------------------------------------------------------------
def test_kd_losses_documented_form():
    torch.manual_seed(0)
    s = torch.randn(5, 4, requires_grad=True)
    tl = torch.randn(5, 4, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0])
    T = 2.0
    ls, lt = M.kd_losses(s, tl, y, T=T)
    ps, pt = torch.softmax(s / T, 1), torch.softmax(tl / T, 1)
    kl = lambda p, q: (p * (p.log() - q.log())).sum(1).mean()
    exp_s = 0.7 * F.cross_entropy(s, y) + 0.7 * T * T * kl(pt, ps)
    exp_t = 1.0 * F.cross_entropy(tl, y) + 0.5 * T * T * kl(ps, pt)
    torch.testing.assert_close(ls, exp_s)
    torch.testing.assert_close(lt, exp_t)
    # the teacher is detached in the student loss and vice versa
    g_t = torch.autograd.grad(ls, tl, allow_unused=True)[0]
    g_s = torch.autograd.grad(lt, s, allow_unused=True)[0]
    assert g_t is None and g_s is None


def test_aqe_sharpness_schedule_is_geometric_from_start_to_end():
    sched = M.AQESharpness(1.0, 100.0)
    ks = [sched.sharpness_at(i, 11) for i in range(11)]
    assert ks[0] == 1.0 and ks[-1] == pytest.approx(100.0) and ks[5] == pytest.approx(10.0)
    assert all(a < b for a, b in itertools.pairwise(ks))
    model = _mlp("aqe", 1, 1)
    sched.on_batch_begin(_fake_trainer(model, 11), 10)
    assert act_quantizers(model)[0][1].sharpness == pytest.approx(100.0)
    assert weight_quantizers(model)[0][1].wq.sharpness == pytest.approx(100.0)
    with pytest.raises(ValueError):
        M.AQESharpness(10.0, 1.0)


def test_aqe_blend_schedule():
    assert M.AQESchedule().alpha_at(7, 10) == 0.5
    sched = M.AQESchedule(0.5, 1.0)
    assert sched.alpha_at(0, 11) == 0.5 and sched.alpha_at(10, 11) == 1.0
    model = _mlp("aqe-blend", 1, 1)
    sched.on_batch_begin(_fake_trainer(model, 11), 5)
    assert act_quantizers(model)[0][1].alpha == pytest.approx(0.75)
    assert weight_quantizers(model)[0][1].wq.alpha == pytest.approx(0.75)


def test_quantize_model_reports_layers():
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Hardtanh(), nn.Conv2d(4, 4, 3), nn.Hardtanh(),
                      nn.Flatten(), nn.Linear(4, 2))
    rep = quantize_model(m, 1, 1, "ste")
    assert rep.quantized == ["2"] and rep.full_precision == ["0", "5"]
    assert rep.activations == ["1", "3"]
    assert "quantized layers: 2" in str(rep)


def test_bcgd_rho_comes_from_the_cumulative_blend():
    cb = M.BlendedCoarseGradient(blend=0.8)
    cb.on_train_begin(SimpleNamespace(total_steps=1600))
    assert cb.rho == pytest.approx(0.8 / 1600)
    explicit = M.BlendedCoarseGradient(rho=0.0)
    explicit.on_train_begin(SimpleNamespace(total_steps=1600))
    assert explicit.rho == 0.0  # the coarse-gradient arm


def test_lr_anneals_to_one_percent_and_restarts_per_stage():
    from qcompile.train.trainer import lr_factor

    assert lr_factor(0, 100, [0], 0.01) == 1.0
    assert lr_factor(99, 100, [0], 0.01) == pytest.approx(0.01)
    # four SQ stages of 25 steps: each starts at 1 and ends at 1 %
    starts = M.StochasticQuantization().stage_starts(100)
    assert starts == [0, 25, 50, 75]
    for s0 in starts:
        assert lr_factor(s0, 100, starts, 0.01) == 1.0
        assert lr_factor(s0 + 24, 100, starts, 0.01) == pytest.approx(0.01)


def test_kd_teacher_shares_the_students_optimizer_and_schedule():
    from qcompile.train.trainer import train

    r = train(model="convnet", data="digits", method="kd", wbits=2, abits=2, epochs=1,
              batch_size=64, width=0.25, subset=256, progress=False, export=False, seed=0)
    trainer = r.extra["trainer"]
    opt_params = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in opt_params for p in r.teacher.parameters())
    assert len(trainer.optimizer.param_groups) == 2
    lrs = [g["lr"] for g in trainer.optimizer.param_groups]
    assert lrs[0] == lrs[1] == pytest.approx(0.05 * 0.01)  # one schedule, annealed to 1 %


def test_init_from_loads_a_float_checkpoint(tmp_path):
    from qcompile.errors import QCompileError
    from qcompile.train.trainer import train

    fp = train(model="convnet", data="digits", method="fp32", epochs=1, batch_size=64,
               width=0.25, subset=128, progress=False, export=False, out=str(tmp_path / "fp"))
    ckpt = tmp_path / "fp" / "checkpoint.pt"
    r = train(model="convnet", data="digits", method="bcgd", wbits=1, abits=4, epochs=1,
              batch_size=64, width=0.25, subset=128, progress=False, export=False,
              init_from=str(ckpt), max_steps_per_epoch=0, lr=0.0)
    fp_w = dict(fp.model.named_parameters())
    for name, p in r.model.named_parameters():
        if name.endswith(".weight"):
            assert torch.equal(p.detach(), fp_w[name].detach()), name
    with pytest.raises(QCompileError, match="does not match"):
        train(model="convnet", data="digits", method="bcgd", epochs=1, width=0.5, subset=128,
              progress=False, export=False, init_from=str(ckpt))
