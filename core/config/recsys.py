"""The data and model sections of recommender systems (D2L 16): ratings, rankings, click-through.

Three data sets, three tasks (`core.config.metrics`):
- `movielens`: explicit ratings, scored by RMSE (16.3 matrix factorisation, 16.4 AutoRec);
- `movielens_ranking`: implicit feedback, each test interaction ranked against the items the user
  has not seen, scored by the hit rate in the top k and the AUC (16.5-16.7);
- `ctr`: click-through rates from categorical features, scored by log-loss and AUC (16.8-16.10).

The MovieLens sections read the real ml-100k file, or draw ratings from a known low-rank model
with known noise (`source: lowrank`), whose best achievable RMSE is that noise.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from .section import Init, Section


class LowRankRatings(Section):
    """Ratings r = 3.5 + b_u + b_i + p_u . q_i + noise (`core.data.recsys.lowrank_ratings`): the
    defaults have ml-100k's users, items and density. No model can beat an RMSE of `noise` on
    held-out ratings, in expectation: it is the floor a test of the optimizer can aim at."""

    num_users: int = Field(943, gt=1)
    num_items: int = Field(1682, gt=1)
    rank: int = Field(10, gt=0, description="the true model's latent factors")
    density: float = Field(0.063, gt=0, le=1, description="the fraction of (user, item) pairs rated")
    noise: float = Field(0.9, ge=0, description="stddev of the rating noise: the RMSE floor")
    min_per_user: int = Field(10, gt=0, description="ratings each user has at least")
    exposure: float = Field(0.0, ge=0, description="beta: a pair is rated with odds exp(beta z), z its standardised "
                            "true rating (0: at random; > 0: users rate what they like, a signal for ranking)")


class _Interactions(Section):
    """Where the interactions come from."""

    source: Literal["ml-100k", "lowrank"] = Field("ml-100k", description="the real MovieLens 100K, or generated ratings")
    lowrank: LowRankRatings = LowRankRatings()
    file: str | None = Field(None, description="read this u.data file (user<TAB>item<TAB>rating<TAB>time) instead")
    dir: str | None = None
    test_ratio: float = Field(0.1, gt=0, lt=1, description="the share of interactions a random split holds out")


class MovieLensData(_Interactions):
    """Explicit ratings (D2L 16.2-16.4), split at random (the book's `split_data_ml100k`).
    `form: pairs`: each example is a (user, item) pair and its rating (matrix factorisation);
    `form: item_vectors`: each example is an item's column of the rating matrix, 0 where unrated
    (item-based AutoRec), evaluated against the held-out ratings of that column."""

    task: ClassVar[str] = "rating"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ()
    name: Literal["movielens"] = "movielens"
    split: Literal["random", "seq_aware"] = "random"
    form: Literal["pairs", "item_vectors"] = "pairs"
    batch_size: int = Field(512, gt=0)


class MovieLensRankingData(_Interactions):
    """Implicit feedback (D2L 16.5-16.7): every rating is an interaction. Training pairs a user
    with an item it interacted with and, at each step, an item it did not (drawn uniformly from
    those, D2L 16.5); evaluation ranks each held-out interaction against every item the user has
    no training interaction with, reporting the hit rate in the top `top_k` and the AUC.
    `seq_len: L` > 0 adds each example's L previous items (Caser, D2L 16.7; a seq-aware split)."""

    task: ClassVar[str] = "ranking"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ()
    # the training step samples negatives against the training interactions, which a seed draws
    # (generated data, a random split): trials of other seeds cannot share one program
    program_depends_on_seed: ClassVar[bool] = True
    name: Literal["movielens_ranking"] = "movielens_ranking"
    split: Literal["seq_aware", "random"] = Field("seq_aware", description="seq_aware: each user's last interaction is held out")
    seq_len: int = Field(0, ge=0, description="L: the previous items each example carries (0: none)")
    top_k: int = Field(50, gt=0, description="the k of the hit rate (the book's 50)")
    batch_size: int = Field(1024, gt=0)

    @model_validator(mode="after")
    def _sequences_need_order(self) -> MovieLensRankingData:
        if self.seq_len and self.split != "seq_aware":
            raise ValueError("seq_len: sequences of previous items need split: seq_aware (a random split has no 'previous')")
        return self


class CTRData(Section):
    """Click-through data (D2L 16.8): a click label and 34 categorical fields per line; values
    seen fewer than `min_threshold` times in training share their field's last index. `source:
    generated` writes a file in the same format from a known factorisation machine, so the best
    achievable log-loss and AUC are known (summary.json: `val/loss_best`, `val/auc_best`)."""

    task: ClassVar[str] = "supervised"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ("val/auc",)
    name: Literal["ctr"] = "ctr"
    source: Literal["ctr", "generated"] = Field("ctr", description="d2l's ctr.zip, or a generated file in its format")
    min_threshold: int = Field(4, gt=0, description="rarer values map to the field's 'other' index")
    num_train: int = Field(15000, gt=0, description="generated: training lines (the real set's 15,000)")
    num_val: int = Field(3000, gt=0, description="generated: test lines (the real set's 3,000)")
    file: str | None = Field(None, description="read this training file (its test file beside it: test.csv)")
    dir: str | None = None
    batch_size: int = Field(2048, gt=0)


Hidden = tuple[Annotated[int, Field(gt=0)], ...]


class MFModel(Section):
    """Matrix factorisation (D2L 16.3): r_ui = p_u . q_i + b_u + b_i."""

    name: Literal["mf"] = "mf"
    num_factors: int = Field(30, gt=0)
    init: Init = "normal"
    init_scale: float = Field(0.01, ge=0)


class AutoRecModel(Section):
    """Item-based AutoRec (D2L 16.4): an item's ratings -> sigmoid(V r + mu) -> dropout -> W h + b."""

    name: Literal["autorec"] = "autorec"
    hidden: int = Field(500, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    init: Init = "normal"
    init_scale: float = Field(0.01, ge=0)


class NeuMFModel(Section):
    """NeuMF (D2L 16.6): generalised MF (p_u * q_i) beside an MLP on [u_u, v_i], then one
    sigmoid unit without bias over both."""

    name: Literal["neumf"] = "neumf"
    num_factors: int = Field(10, gt=0)
    hidden: Hidden = (10, 10, 10)
    init: Init = "normal"
    init_scale: float = Field(0.01, ge=0)


class CaserModel(Section):
    """Caser (D2L 16.7): vertical (L x 1) and horizontal (h x k, h = 1..L) convolutions over the
    embeddings of the L previous items, max-pooled, then a dense layer; scored against each
    item's second embedding beside the user's."""

    name: Literal["caser"] = "caser"
    num_factors: int = Field(10, gt=0)
    d: int = Field(16, gt=0, description="channels of each horizontal convolution")
    d_prime: int = Field(4, gt=0, description="channels of the vertical convolution")
    dropout: float = Field(0.05, ge=0, lt=1)
    init: Init = "normal"
    init_scale: float = Field(0.01, ge=0)


class FMModel(Section):
    """Factorisation machine (D2L 16.9): w0 + sum_i w_i + sum_{i<j} <v_i, v_j> over the fields'
    features, as a logit."""

    name: Literal["fm"] = "fm"
    num_factors: int = Field(20, gt=0)
    init: Init = "xavier"
    init_scale: float = Field(0.01, ge=0)


class DeepFMModel(Section):
    """DeepFM (D2L 16.10): a factorisation machine plus an MLP on the concatenated field
    embeddings, summed into one logit."""

    name: Literal["deepfm"] = "deepfm"
    num_factors: int = Field(10, gt=0)
    hidden: Hidden = (30, 20, 10)
    dropout: float = Field(0.1, ge=0, lt=1)
    init: Init = "xavier"
    init_scale: float = Field(0.01, ge=0)


RECSYS_DATA = (MovieLensData, MovieLensRankingData, CTRData)
RECSYS_MODELS = (MFModel, AutoRecModel, NeuMFModel, CaserModel, FMModel, DeepFMModel)
