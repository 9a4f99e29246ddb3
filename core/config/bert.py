"""The data and model sections of BERT (D2L 14.10, 15.7): pretraining examples of a corpus, the
pretraining model (encoder, MaskLM and NSP heads) and the classifier fine-tuned from it."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from .section import Section


class BertPretrainData(Section):
    """BERT's pretraining examples (D2L 14.9) of a corpus: next-sentence pairs of each
    paragraph, 15% of their tokens predicted (80% `<mask>`, 10% a random token, 10% unchanged),
    padded to `max_len`. All of it is drawn once at load from the run's seed, as the book draws
    it once. `corpus`: wikitext2 (the book's `wiki.train.tokens`), ptb (PTB's training sentences,
    each run of `sentences_per_paragraph` consecutive ones a paragraph) or timemachine (its
    blank-line paragraphs). With `steps_per_epoch`, an epoch is that many batches of an endless
    shuffled stream, so that pretraining runs by steps (the book: 50); otherwise one pass.
    x = {"tokens", "segments", "valid_lens", "pred_positions"}, y = {"mlm_labels",
    "mlm_weights", "nsp_labels"}; the run keeps the vocabulary in vocab.json for a fine-tuned run."""

    task: ClassVar[str] = "bert_pretraining"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ("all_steps/mlm_loss", "all_steps/nsp_loss")
    splits: ClassVar[tuple[str, ...]] = ("train",)
    program_depends_on_seed: ClassVar[bool] = True  # the seed draws the pairs, so how many there are
    quick: ClassVar[dict[str, int]] = {"num_paragraphs": 200, "batch_size": 64, "steps_per_epoch": 2}  # `dlrun reproduce --quick`
    name: Literal["bert_pretrain"] = "bert_pretrain"
    corpus: Literal["wikitext2", "ptb", "timemachine"] = Field(
        "wikitext2", description="wikitext2: the book's; ptb, timemachine: offline stand-ins")
    file: str | None = Field(None, description="read this corpus file (wiki.train.tokens, ptb.zip or ptb.train.txt, timemachine.txt)")
    dir: str | None = Field(None, description="a directory searched first for the corpus file")
    max_len: int = Field(64, ge=5, le=1000, description="the longest input sequence (the book's 64)")
    min_freq: int = Field(5, gt=0, description="the vocabulary keeps words seen this often (the book's 5)")
    sentences_per_paragraph: int = Field(5, ge=2, description="ptb: consecutive sentences grouped into a paragraph")
    num_paragraphs: int | None = Field(None, gt=0, description="use the first N paragraphs (a quick run)")
    steps_per_epoch: int | None = Field(None, gt=0, description="batches per epoch, from an endless shuffled stream")
    batch_size: int = Field(512, gt=0)


class BertSNLIData(Section):
    """Premise-hypothesis pairs as BERT's inputs (D2L 15.7's `SNLIBERTDataset`): the pairs of
    `data.name: snli` (the SNLI corpus, or with `source: stand_in` the pairs built offline from
    fra-eng's English sentences), lower-cased and split on spaces, each pair `<cls>` premise
    `<sep>` hypothesis `<sep>`, the longer of the two cut until it fits `max_len`, padded;
    token ids of the pretraining run's vocabulary (`vocab_from`: its vocab.json), so that the
    fine-tuned encoder reads the ids it was pretrained on. x = {"tokens", "segments",
    "valid_lens"}, y (n,) labels: entailment 0, contradiction 1, neutral 2."""

    task: ClassVar[str] = "supervised"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ()
    name: Literal["snli_bert"] = "snli_bert"
    source: Literal["real", "stand_in"] = Field(
        "real", description="real: the SNLI corpus; stand_in: pairs built from fra-eng's English sentences")
    file: str | None = Field(None, description="real: snli_1.0.zip or the extracted snli_1.0 folder; stand_in: a fra.txt")
    dir: str | None = None
    vocab_from: str | None = Field(None, description="the pretraining run whose vocab.json gives the token ids "
                                                     "(experiment bert_nli sets it)")
    max_len: int = Field(128, ge=5, description="tokens per pair, <cls> and both <sep> included (the book's 128)")
    split_clitics: bool = Field(True, description="split words as PTB and WikiText-2 do (\"is n't\", \"it 's\"), "
                                                  "the pretraining corpora's tokens")
    num_pairs: int | None = Field(None, gt=0, description="train on the first N pairs (a quick run); null: all")
    num_val: int | None = Field(None, gt=0, description="validate on the first N test pairs; null: all (stand_in: 2,000)")
    batch_size: int = Field(512, gt=0)


class BertSizesSection(Section):
    """The sizes of `BERTModel` (D2L 14.8.5): 14.10 pretrains (len(vocab), 128, 256, 2, 2, 0.2, 1000)."""

    num_hiddens: int = Field(128, gt=0, description="the encoder's width")
    ffn_num_hiddens: int = Field(256, gt=0, description="the FFN's hidden width")
    num_heads: int = Field(2, gt=0)
    num_blks: int = Field(2, gt=0, description="encoder blocks")
    dropout: float = Field(0.2, ge=0, lt=1, description="on attention weights and in each add & norm")
    max_len: int = Field(1000, gt=0, description="rows of the learned positional embedding")

    @model_validator(mode="after")
    def _heads_divide(self):
        if self.num_hiddens % self.num_heads:
            raise ValueError(f"num_hiddens ({self.num_hiddens}) must be a multiple of num_heads ({self.num_heads})")
        return self


class BertModel(BertSizesSection):
    """BERT for pretraining (D2L 14.8, 14.10): the encoder, MaskLM on the predicted positions and
    NSP on `<cls>`; outputs {"mlm": (batch, P, vocab), "nsp": (batch, 2)}, trained on the sum of
    the two cross-entropies (`loss.name: bert_pretraining`)."""

    name: Literal["bert"] = "bert"


class BertClassifierModel(BertSizesSection):
    """BERT fine-tuned to classify (D2L 15.7): the encoder and the NSP hidden layer (dense and
    tanh on `<cls>`), both copied from a pretraining run with `init_from: {run: ..., exclude:
    [output/*]}`, then a new dense `output` layer. `valid_lens` masks the padding."""

    name: Literal["bert_classifier"] = "bert_classifier"


BERT_DATA: tuple = (BertPretrainData, BertSNLIData)
BERT_MODELS: tuple = (BertModel, BertClassifierModel)
