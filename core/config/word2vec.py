"""The data and model sections of word embeddings (D2L 14.3-14.4): PTB for word2vec, skip-gram."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .section import Section


class PTBWord2VecData(Section):
    """PTB's training sentences as skip-gram examples (D2L 14.3): the vocabulary of words seen
    at least `min_freq` times, subsampling with threshold `subsample_t`, a context window of
    1..`max_window_size` words each side and `num_noise_words` noise words per context word,
    all drawn once at load from the run's seed (as the book draws them once). Each example is a
    centre word with its context and noise words padded to 2 * max_window_size * (1 + K) ids:
    x = {"center", "contexts_negatives"}, y = {"mask", "label"}. No validation split, as the book."""

    task: ClassVar[str] = "supervised"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ()
    splits: ClassVar[tuple[str, ...]] = ("train",)
    # the seed draws which tokens subsampling keeps, so how many examples there are: trials of
    # other seeds cannot share one program
    program_depends_on_seed: ClassVar[bool] = True
    quick: ClassVar[dict[str, int]] = {"num_sentences": 2000, "batch_size": 64}  # `dlrun reproduce --quick`
    name: Literal["ptb_word2vec"] = "ptb_word2vec"
    file: str | None = Field(None, description="read this ptb.zip (or extracted ptb.train.txt) instead of the data directory's")
    dir: str | None = None
    min_freq: int = Field(10, gt=0, description="rarer words map to <unk>")
    subsample_t: float = Field(1e-4, gt=0, le=1, description="t: a word of share f is kept with probability sqrt(t / f)")
    max_window_size: int = Field(5, gt=0)
    num_noise_words: int = Field(5, gt=0, description="K: noise words per context word")
    num_sentences: int | None = Field(None, gt=0, description="use the first N sentences (a quick run)")
    batch_size: int = Field(512, gt=0)


class SkipGramModel(Section):
    """Skip-gram (D2L 14.4): centre-word vectors v and context-word vectors u, both
    (vocab, embed_size), Xavier-uniform as the book's; the logit of a (centre, word) pair is
    u . v. After training, summary.json holds the `top_k` nearest words by cosine of each of
    `similar` (the centre vectors, D2L 14.4.3)."""

    name: Literal["skip_gram"] = "skip_gram"
    embed_size: int = Field(100, gt=0)
    similar: tuple[str, ...] = Field(("chip",), description="words whose nearest neighbours the summary reports")
    top_k: int = Field(3, gt=0, description="neighbours reported per word")


WORD2VEC_DATA: tuple = (PTBWord2VecData,)
WORD2VEC_MODELS: tuple = (SkipGramModel,)
