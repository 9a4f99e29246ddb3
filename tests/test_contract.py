"""The model/data contract beyond one input and one output: named inputs, several outputs and
targets, and a loss that combines a class loss with a masked box loss (the shape of D2L 13.7's
SSD loss), all through the one training step and evaluation, checked against numpy."""

import jax
import jax.numpy as jnp
import numpy as np

from dlrun.core.nn.losses import Loss, Metric
from dlrun.core.nn.models import Model
from dlrun.core.training.state import Arrays, init_state, take
from dlrun.core.training.steps import make_eval_fn, make_train_step, pad_for_eval


def two_heads():
    """image (4,) and side (2,) in; class logits (3,) and a box (4,) out."""

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"cls": jax.random.normal(k1, (6, 3)) * 0.1, "box": jax.random.normal(k2, (6, 4)) * 0.1}, {}

    def apply(params, state, x, *, train=False, key=None):
        h = jnp.concatenate([x["image"], x["side"]], axis=-1)
        return {"cls": h @ params["cls"], "box": h @ params["box"]}, state

    return Model(init, apply, {"image": (4,), "side": (2,)})


def detection_loss(out, y):
    """Per example: cross-entropy of the class plus the L1 box error where the mask is on."""
    ce = -jnp.take_along_axis(jax.nn.log_softmax(out["cls"]), y["label"][:, None], axis=-1)[:, 0]
    return ce + jnp.sum(jnp.abs(out["box"] - y["box"]) * y["mask"], axis=-1)


def np_loss(params, x, y):
    h = np.concatenate([x["image"], x["side"]], -1).astype(np.float64)
    logits, box = h @ params["cls"], h @ params["box"]
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -log_p[np.arange(len(h)), y["label"]]
    return np.mean(ce + np.sum(np.abs(box - y["box"]) * y["mask"], -1))


def data(n=10, seed=0):
    rng = np.random.default_rng(seed)
    x = {"image": rng.normal(size=(n, 4)).astype(np.float32), "side": rng.normal(size=(n, 2)).astype(np.float32)}
    y = {"label": rng.integers(0, 3, n).astype(np.int32), "box": rng.uniform(size=(n, 4)).astype(np.float32),
         "mask": (rng.uniform(size=(n, 4)) > 0.5).astype(np.float32)}
    return Arrays(x, y)


def test_named_inputs_several_outputs_and_a_combined_loss_train_through_the_one_step():
    import optax

    model, arrays = two_heads(), data()
    optimizer = optax.sgd(0.1)
    step = jax.jit(make_train_step(model, Loss(detection_loss, classify=False), optimizer))
    state = init_state(model, optimizer, jax.random.PRNGKey(0))
    batch = take(jax.tree_util.tree_map(jnp.asarray, arrays), jnp.arange(8))
    new, metrics = step(state, batch, jax.random.PRNGKey(1))
    host = jax.tree_util.tree_map(np.asarray, batch)
    params = {k: np.asarray(v, np.float64) for k, v in state.params.items()}
    np.testing.assert_allclose(metrics["loss"], np_loss(params, host.x, host.y), rtol=1e-5)
    # the update is -lr times the gradient, against central differences of the numpy loss
    for name in params:
        grad = np.zeros_like(params[name])
        for i in np.ndindex(grad.shape):
            up, down = ({**params, name: params[name].copy()} for _ in range(2))
            up[name][i] += 1e-6
            down[name][i] -= 1e-6
            grad[i] = (np_loss(up, host.x, host.y) - np_loss(down, host.x, host.y)) / 2e-6
        np.testing.assert_allclose(np.asarray(new.params[name]), params[name] - 0.1 * grad, rtol=1e-4, atol=1e-5)


def test_evaluation_pads_named_inputs_and_targets_and_counts_each_example_once():
    model, arrays = two_heads(), data(n=10)
    state = init_state(model, __import__("optax").sgd(0.1), jax.random.PRNGKey(0))
    batches, mask = pad_for_eval(arrays, 4)  # 10 examples in 3 batches of 4, two of padding
    assert batches.x["side"].shape == (3, 4, 2) and batches.y["mask"].shape == (3, 4, 4)
    evaluate = make_eval_fn(model, {"loss": Metric(detection_loss)})
    got = evaluate(state.params, state.model_state, batches, mask)
    params = {k: np.asarray(v, np.float64) for k, v in state.params.items()}
    np.testing.assert_allclose(got["loss"], np_loss(params, arrays.x, arrays.y), rtol=1e-5)
