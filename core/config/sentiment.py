"""The data and model sections of sentiment analysis (D2L 15.1-15.3): IMDb reviews (or an
offline stand-in of the same form), the bidirectional LSTM and textCNN, and pretrained word
vectors for their embeddings."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from .section import Section


class IMDbData(Section):
    """Stanford's large movie review data set as the book reads it (D2L 15.1): `source: real`
    reads aclImdb_v1.tar.gz or its extracted `aclImdb/{train,test}/{pos,neg}/*.txt` (labels 1
    pos, 0 neg), each review's newlines removed and its words split on spaces (case and
    punctuation kept, as `d2l.tokenize(..., 'word')`); the vocabulary holds the training
    reviews' tokens seen at least `min_freq` times, `<unk>` 0 and `<pad>` 1; every review is
    truncated or padded with `<pad>` to `num_steps` tokens. Training reviews train; the test
    reviews validate (the book evaluates on them).

    `source: stand_in` is an offline task of the same form from files the data directory has
    (`core.data.sentiment`): documents of doc_words / 4 to `doc_words` consecutive words (lengths
    drawn with the seed) of The Time Machine (label 1) against as many of the Penn Treebank
    (label 0), both cleaned to lower-case letters, PTB's `<unk>` and `N` dropped; half of them,
    drawn with the seed, train."""

    task: ClassVar[str] = "supervised"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ()
    # the stand-in's document lengths are drawn with the seed, so how many documents there are:
    # trials of other seeds cannot share one program
    program_depends_on_seed: ClassVar[bool] = True
    name: Literal["imdb"] = "imdb"
    source: Literal["real", "stand_in"] = Field("real", description="real: the IMDb reviews; stand_in: Time Machine vs PTB")
    file: str | None = Field(None, description="real: read this aclImdb_v1.tar.gz or extracted aclImdb folder")
    dir: str | None = Field(None, description="the data directory to search first (for aclImdb, or timemachine.txt and ptb.zip)")
    num_steps: int = Field(500, gt=0, description="tokens per review, truncated or padded with <pad>")
    min_freq: int = Field(5, gt=0, description="training tokens seen fewer times map to <unk>")
    num_reviews: int | None = Field(None, gt=1, description="a quick run: this many reviews of each split, half of each label")
    doc_words: int = Field(20, gt=0, description="stand_in: the most words of a document (the fewest: a quarter of it)")
    batch_size: int = Field(64, gt=0)


class PretrainedVectors(Section):
    """Word vectors for a text model's embedding (D2L 15.2.2): `file`, a GloVe or fastText text
    file (or d2l's `glove.6b.100d` folder holding vec.txt), or `run`, a dlrun word2vec run
    directory (its centre vectors `params/embed_v/w` and its data's vocabulary). Each of the
    data's tokens gets its vector; a word the vectors lack gets zeros (as d2l's `TokenEmbedding`
    gives unknown tokens). `freeze`: the table is not trained (the book's requires_grad False)."""

    file: str | None = None
    run: str | None = None
    freeze: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> PretrainedVectors:
        if (self.file is None) == (self.run is None):
            raise ValueError("give exactly one of file (a GloVe/fastText .txt or glove folder) and run (a word2vec run directory)")
        return self


class BiRNNModel(Section):
    """D2L 15.2's BiRNN: an embedding (vocab, embed_size), a `layers`-layer bidirectional LSTM of
    `hidden` units each way, the last layer's outputs at the first and the last time steps
    concatenated (4 hidden) and a dense layer to the classes. Xavier-uniform dense and LSTM
    weights (the book's `init_weights`); the embedding is N(0, 1) unless `embedding` loads
    pretrained vectors."""

    name: Literal["birnn"] = "birnn"
    embed_size: int = Field(100, gt=0)
    hidden: int = Field(100, gt=0, description="LSTM units in each direction")
    layers: int = Field(2, gt=0)
    embedding: PretrainedVectors | None = None


class TextCNNModel(Section):
    """D2L 15.3's textCNN: two embeddings of `embed_size`, one trained and one constant (both
    loaded from `embedding` when it is set, else N(0, 1) draws), concatenated; one 1-d
    convolution per kernel size with its channels, ReLU, pooling over time, concatenated;
    dropout and a dense layer to the classes. Xavier-uniform convolution and dense weights (the
    book's `init_weights`). `pool: max` is max-over-time pooling, as the text and the MXNet
    code have it; `avg` is the PyTorch tab's `AdaptiveAvgPool1d(1)` then ReLU."""

    name: Literal["textcnn"] = "textcnn"
    embed_size: int = Field(100, gt=0)
    kernel_sizes: tuple[int, ...] = Field((3, 4, 5), min_length=1)
    channels: tuple[int, ...] = Field((100, 100, 100), min_length=1)
    dropout: float = Field(0.5, ge=0, le=1)
    pool: Literal["max", "avg"] = "max"
    embedding: PretrainedVectors | None = None

    @model_validator(mode="after")
    def _pairs(self) -> TextCNNModel:
        if len(self.kernel_sizes) != len(self.channels):
            raise ValueError(f"kernel_sizes ({len(self.kernel_sizes)}) and channels ({len(self.channels)}) must pair up")
        if any(k <= 0 for k in self.kernel_sizes) or any(c <= 0 for c in self.channels):
            raise ValueError("kernel_sizes and channels must be positive")
        if self.embedding is not None and not self.embedding.freeze:
            raise ValueError("embedding.freeze: textcnn trains one table and keeps the other constant (the book's pair); "
                             "freeze: false has no meaning here")
        return self


SENTIMENT_DATA: tuple = (IMDbData,)
SENTIMENT_MODELS: tuple = (BiRNNModel, TextCNNModel)
