"""Models, losses, metrics and learning-rate schedules."""

from pathlib import Path

import keras
import numpy as np
import pytest
from training_fixtures import model_defaults

from tumorseg.errors import InputError
from tumorseg.training.losses import RegionDice, get_loss, region_dice_metrics
from tumorseg.training.models import build_model, forward_flops, parameter_counts
from tumorseg.training.optim import OneCycle, get_optimizer

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def settings(**overrides):
    s = model_defaults(SCHEMA)
    s.update(depth=2, base_filters=4, kernels=[4, 4], dilation_rates=[1, 2])
    s.update(overrides)
    return s


def test_defaults_come_from_the_schema():
    s = model_defaults(SCHEMA)
    assert s["architecture"] == "unet"
    assert s["augment"]["flip"] is True
    assert set(s["augment"]) == {"flip", "rotation", "shift", "zoom", "shear"}


@pytest.mark.parametrize(
    "overrides",
    [
        {"architecture": "unet", "upsampling": "transpose"},
        {"architecture": "unet", "upsampling": "upsample", "batch_norm": False, "dropout": 0},
        {"architecture": "cnn"},
        {"architecture": "cnn", "dilation_rates": [2], "batch_norm": False},
    ],
)
def test_models_give_softmax_of_the_right_shape(overrides):
    model = build_model(settings(**overrides), n_channels=3, input_size=32)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    y = model.predict(x, verbose=0)
    assert y.shape == (2, 32, 32, 4)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, atol=1e-5)
    assert (y >= 0).all()


def test_unet_depth_and_filters_shape_the_network():
    model = build_model(settings(depth=3, base_filters=8), n_channels=4, input_size=32)
    bottleneck = model.get_layer("bottleneck_conv2")
    assert bottleneck.output.shape[1:] == (4, 4, 64)
    assert model.get_layer("bottleneck_dropout").rate == pytest.approx(0.1)
    assert isinstance(model.get_layer("dec0_upconv"), keras.layers.Conv2DTranspose)
    up = build_model(settings(upsampling="upsample"), n_channels=4, input_size=32)
    assert isinstance(up.get_layer("dec0_up"), keras.layers.UpSampling2D)


def test_mixed_precision_keeps_a_float32_softmax():
    model = build_model(settings(), 4, input_size=32, dtype_policy="mixed_float16")
    assert model.get_layer("enc0_conv1").compute_dtype == "float16"
    assert model.output.dtype == "float32"


def test_bad_model_settings_are_input_errors():
    with pytest.raises(InputError, match="divisible by 8"):
        build_model(settings(depth=3), 4, input_size=36)
    with pytest.raises(InputError, match="dilation_rates"):
        build_model(settings(architecture="cnn", dilation_rates=[1, 2, 4]), 4, input_size=32)


def test_same_seed_same_initial_weights():
    a = build_model(settings(seed=3), 4, input_size=16).get_weights()
    b = build_model(settings(seed=3), 4, input_size=16).get_weights()
    c = build_model(settings(seed=4), 4, input_size=16).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_forward_flops_by_hand():
    s = settings(architecture="cnn", kernels=[3], dilation_rates=[1], batch_norm=False, dropout=0)
    model = build_model(s, n_channels=2, input_size=8)
    conv = 2 * 64 * 9 * 2 * 3 + 64 * 3  # 3x3 conv 2->3 with bias
    relu = 64 * 3
    logits = 2 * 64 * 3 * 4 + 64 * 4
    softmax = 3 * 64 * 4
    assert forward_flops(model) == conv + relu + logits + softmax
    counts = parameter_counts(model)
    assert counts["total"] == (9 * 2 * 3 + 3) + (3 * 4 + 4)
    assert counts["non_trainable"] == 0


def onehot(classes, n=4):
    return np.eye(n, dtype=np.float32)[np.asarray(classes)]


def test_losses_against_hand_computed_values():
    truth = onehot([[0, 1], [2, 3]])[None]  # 1 x 2 x 2 x 4
    p = np.array(
        [
            [[0.7, 0.1, 0.1, 0.1], [0.2, 0.6, 0.1, 0.1]],
            [[0.1, 0.1, 0.5, 0.3], [0.25, 0.25, 0.25, 0.25]],
        ],
        dtype=np.float32,
    )[None]
    ce = -np.mean(np.log([0.7, 0.6, 0.5, 0.25]))
    # foreground classes 1..3: sums over the batch
    inter = np.array([0.6, 0.5, 0.25])
    psum = p[0].reshape(-1, 4).sum(axis=0)[1:]
    dice = 1 - np.mean((2 * inter + 1e-5) / (1 + psum + 1e-5))
    loss = lambda **kw: float(get_loss(settings(**kw))(truth, p))  # noqa: E731
    assert loss(loss="ce") == pytest.approx(ce, rel=1e-5)
    assert loss(loss="dice") == pytest.approx(dice, rel=1e-5)
    assert loss(loss="dice_ce", ce_weight=0.5, dice_weight=2.0) == pytest.approx(
        0.5 * ce + 2.0 * dice, rel=1e-5
    )
    perfect = float(get_loss(settings(loss="dice"))(truth, truth))
    assert perfect == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(InputError):
        get_loss(settings(loss="dice_ce", ce_weight=0, dice_weight=0))


def test_region_dice_pools_over_batches():
    rng = np.random.default_rng(1)
    truths = rng.integers(0, 4, size=(3, 2, 8, 8))
    preds = rng.integers(0, 4, size=(3, 2, 8, 8))
    metrics = region_dice_metrics()
    assert [m.name for m in metrics] == ["dice_wt", "dice_tc", "dice_et"]
    for t, q in zip(truths, preds, strict=True):
        probs = onehot(q) * 0.7 + 0.075  # argmax still q
        for m in metrics:
            m.update_state(onehot(t), probs)
    for m, classes in zip(metrics, [(1, 2, 3), (1, 3), (3,)], strict=True):
        a, b = np.isin(truths, classes), np.isin(preds, classes)
        expected = 2 * (a & b).sum() / (a.sum() + b.sum())
        assert float(m.result()) == pytest.approx(expected, rel=1e-6)
    empty = RegionDice("ET")
    empty.update_state(onehot(np.zeros((1, 4, 4), int)), onehot(np.zeros((1, 4, 4), int)))
    assert float(empty.result()) == 1.0


def test_one_cycle_schedule():
    sched = OneCycle(0.01, total_steps=100)
    lr = [float(sched(step)) for step in range(101)]
    assert lr[0] == pytest.approx(0.01 / 25)
    assert max(lr) == pytest.approx(0.01)
    assert int(np.argmax(lr)) == 30
    assert lr[100] == pytest.approx(0.01 / 25 / 1e4, rel=1e-3)
    assert all(a <= b for a, b in zip(lr[:30], lr[1:31], strict=True))
    assert all(a >= b for a, b in zip(lr[30:100], lr[31:101], strict=True))


def test_one_cycle_warms_up_along_a_cosine_then_decays_as_keras_cosine_decay():
    """Why OneCycle is not Keras's CosineDecay with warm-up: the decay phase is the same,
    the warm-up is a half cosine (one-cycle), not Keras's straight line."""
    max_lr, total, warm = 0.01, 100, 30
    initial, final = max_lr / 25, max_lr / 25 / 1e4
    sched = OneCycle(max_lr, total_steps=total)
    keras_sched = keras.optimizers.schedules.CosineDecay(
        initial, total - warm, alpha=final / max_lr, warmup_target=max_lr, warmup_steps=warm
    )
    for step in range(total + 1):
        if step < warm:
            cosine = initial + (max_lr - initial) * (1 - np.cos(np.pi * step / warm)) / 2
        else:
            t = (step - warm) / (total - warm)
            cosine = final + (max_lr - final) * (1 + np.cos(np.pi * t)) / 2
            assert float(keras_sched(step)) == pytest.approx(cosine, rel=1e-5, abs=1e-8)
        assert float(sched(step)) == pytest.approx(cosine, rel=1e-5, abs=1e-8)
    quarter = float(sched(warm // 4))  # cosine warm-up: well below Keras's linear one there
    assert quarter < 0.75 * float(keras_sched(warm // 4))


def test_optimizers():
    sgd = get_optimizer(settings(optimizer="sgd", momentum=0.8, schedule="constant"), 10)
    assert isinstance(sgd, keras.optimizers.SGD)
    assert sgd.momentum == pytest.approx(0.8)
    adam = get_optimizer(settings(optimizer="adam", schedule="cosine"), 10)
    assert isinstance(adam, keras.optimizers.Adam)
    assert isinstance(adam._learning_rate, keras.optimizers.schedules.CosineDecay)
