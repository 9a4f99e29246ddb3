"""The data and model sections of natural language inference (D2L 15.4-15.5): SNLI (or its
offline stand-in built from English sentences) and the decomposable attention model."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .section import Section


class SNLIData(Section):
    """Premise-hypothesis pairs labelled entailment 0, contradiction 1, neutral 2 (D2L 15.4).

    `source: real` reads the Stanford NLI corpus (snli_1.0.zip or its extracted folder,
    `snli_1.0_train.txt` trains and `snli_1.0_test.txt` validates), as the book's `read_snli`:
    the parse trees' parentheses stripped, pairs labelled '-' dropped. `source: stand_in` builds
    pairs offline from the English side of fra-eng (`core.data.nli_pairs`): premise "A and B",
    hypothesis A itself (entailment), A with one word turned into its antonym or negation
    (contradiction), or A with that word turned into another word of its kind (neutral).
    The vocabulary counts premises' and hypotheses' training tokens seen at least `min_freq`
    times, `<pad>` reserved; each sentence is cut or padded to `num_steps` tokens.
    x = {"premise": (n, num_steps), "hypothesis": (n, num_steps)} int32, y (n,) labels."""

    task: ClassVar[str] = "supervised"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ()
    name: Literal["snli"] = "snli"
    source: Literal["real", "stand_in"] = Field(
        "real", description="real: the SNLI corpus; stand_in: pairs built from fra-eng's English sentences")
    file: str | None = Field(None, description="real: snli_1.0.zip or the extracted snli_1.0 folder; "
                                               "stand_in: a fra.txt of english<TAB>french lines")
    dir: str | None = None
    num_steps: int = Field(50, gt=0, description="tokens per sentence, cut or padded with <pad>")
    min_freq: int = Field(5, ge=0, description="rarer tokens map to <unk>")
    num_pairs: int | None = Field(None, gt=0, description="train on the first N pairs (a quick run); null: all")
    num_val: int | None = Field(None, gt=0, description="validate on the first N test pairs; null: all "
                                                        "(stand_in: 2,000)")
    batch_size: int = Field(256, gt=0)


class DecomposableAttentionModel(Section):
    """Decomposable attention (D2L 15.5, Parikh et al. 2016): embeddings (vocab, embed_size),
    attend (mlp f), compare (mlp g on [a, beta] and [b, alpha]), aggregate (sums over tokens,
    mlp h, dense 3). Each mlp is the book's: dropout, dense num_hiddens, ReLU, twice. PyTorch's
    initialisation (embeddings N(0, 1), dense weights and biases U(+-1/sqrt(fan_in)))."""

    name: Literal["decomposable_attention"] = "decomposable_attention"
    embed_size: int = Field(100, gt=0)
    num_hiddens: int = Field(200, gt=0)
    dropout: float = Field(0.2, ge=0, lt=1, description="before each dense layer of f, g and h")
    embedding_file: str | None = Field(
        None, description="initialise the embeddings from this GloVe/fastText .txt (the data's words; "
                          "missing ones zero), trained further as the book does")


NLI_DATA: tuple = (SNLIData,)
NLI_MODELS: tuple = (DecomposableAttentionModel,)
