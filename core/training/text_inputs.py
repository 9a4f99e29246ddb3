"""Raw text as a text model's inputs, and a trained text classifier's labels for raw text
(D2L 15.2.4's `predict_sentiment`).

`TEXT_INPUTS` maps a data family (`data.name`) to `encode(meta, texts) -> x`: the family's own
way of turning text into what its model takes, with the data's tokenizer and vocabulary (both
in the loaded data set's `meta`). A family with inputs of several texts (a premise and a
hypothesis) adds its own entry with its own reading of a text.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np

from ..data.bert_nli import encode_bert_pairs
from ..data.nli import encode_pairs
from ..data.sentiment import features, review_tokens, stand_in_words
from ..data.text import Vocab
from ..errors import ConfigError
from .inference import LoadedRun, predict

# how the imdb family tokenized its documents (`core.data.sentiment`): the book's split on spaces
# for IMDb's reviews, the stand-in's cleaning to lower-case letter words
_TOKENIZERS: dict[str, Callable[[str], list[str]]] = {
    "split": lambda text: review_tokens(text.replace("\n", "")),  # as `review_text` reads a review file
    "clean": stand_in_words,
}


def vocab_of(meta: dict[str, Any]) -> Vocab:
    """The data's vocabulary back from its tokens by id (`<unk>` first, as `Vocab` keeps it)."""
    vocab = Vocab(())
    vocab.idx_to_token = list(meta["vocab"])
    vocab.token_to_idx = {t: i for i, t in enumerate(vocab.idx_to_token)}
    return vocab


def encode_reviews(meta: dict[str, Any], texts: Sequence[str]) -> np.ndarray:
    """Reviews as the imdb data's ids, (n, num_steps) int32: tokenized as the data was, unknown
    words `<unk>`, truncated and padded with `<pad>` to the data's `num_steps`, the length the
    model trained on (the book's `predict_sentiment` feeds the unpadded ids)."""
    tokenize = _TOKENIZERS[meta["preprocess"]]
    return features([tokenize(t) for t in texts], vocab_of(meta), meta["num_steps"])


# data.name -> encode(meta, texts) -> the model's input for those texts
TEXT_INPUTS: dict[str, Callable[[dict[str, Any], Sequence[str]], Any]] = {
    "imdb": encode_reviews,
    "snli": encode_pairs,  # "premise | hypothesis"
    "snli_bert": encode_bert_pairs,
}


def classify_texts(run: LoadedRun, texts: Sequence[str]) -> list[tuple[str, float]]:
    """Each text's most likely class and its softmax probability under a trained text classifier.

    Raises:
        ConfigError: a run whose data has no way to read raw text, or no texts.
    """
    name = run.cfg.data.name
    if name not in TEXT_INPUTS:
        raise ConfigError(f"data.name: {name}: not a text classification data set (those are {', '.join(TEXT_INPUTS)})")
    if not texts:
        raise ConfigError("give at least one text to classify")
    try:
        x = TEXT_INPUTS[name](run.data.meta, list(texts))
    except ValueError as err:  # a text the family cannot read ("premise | hypothesis" without its bar)
        raise ConfigError(str(err)) from None
    probs = np.asarray(jax.nn.softmax(predict(run.setup.model, run.state.params, run.state.model_state, x), axis=-1))
    names = run.data.label_names or tuple(str(i) for i in range(probs.shape[-1]))
    return [(names[int(i)], float(p[i])) for i, p in zip(probs.argmax(-1), probs)]
