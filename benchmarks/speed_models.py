"""The models `benchmarks/speed.py` times: each one's config, the kind of epoch it has (which
decides how its config and data are made and what its examples are), and the PyTorch reference
that trains the same network.

Kinds:
    image: Fashion-MNIST classifiers; `--num-train`, `--num-val` and `--data-dir` apply.
    sequence: the book's sequence models on The Time Machine and English-French; short epochs.
    vision: chapter 13's detector and segmenter on their configs' generated sets, at their sizes.
    pretraining: chapter 14's word2vec and BERT pretraining on PTB (no validation split).
    task: chapter 15's sentiment and inference models on their configs' stand-in data, as they are.
    generated: chapters 16-17's recommenders and GANs on their configs' generated data; whole
        batches of a shuffled pass, the same count on both sides.
    synthesis: style transfer (13.12): no data set, an epoch is Adam steps on one image.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("image", "sequence", "vision", "pretraining", "task", "generated", "synthesis")


class Model(NamedTuple):
    config: str
    kind: str
    short: bool = False  # epochs of a second or less: at least `--min-short-epochs` of them are timed


MODELS = {
    "softmax": Model("softmax.yaml", "image"), "mlp": Model("mlp.yaml", "image"), "lenet": Model("lenet.yaml", "image"),
    "bn_lenet": Model("bn_lenet.yaml", "image"), "resnet_cpu": Model("resnet_cpu.yaml", "image"),
    "vit_cpu": Model("vit_cpu.yaml", "image"),
    "gru_lm": Model("gru.yaml", "sequence", True), "seq2seq": Model("seq2seq.yaml", "sequence", True),
    "transformer": Model("transformer.yaml", "sequence", True),
    "tiny_ssd": Model("tiny_ssd_cpu.yaml", "vision"), "fcn": Model("fcn_cpu.yaml", "vision"),
    "style_transfer": Model("style_transfer.yaml", "synthesis", True),
    "word2vec": Model("word2vec.yaml", "pretraining"), "bert": Model("bert_pretrain_ptb.yaml", "pretraining"),
    "birnn": Model("sentiment_birnn_cpu.yaml", "task"), "textcnn": Model("sentiment_textcnn_cpu.yaml", "task"),
    "decomposable": Model("nli_decomposable_cpu.yaml", "task"), "bert_nli": Model("bert_snli_cpu.yaml", "task"),
    "mf": Model("mf_lowrank.yaml", "generated", True), "neumf": Model("neumf_lowrank.yaml", "generated", True),
    "caser": Model("caser_lowrank.yaml", "generated", True), "fm": Model("fm_generated.yaml", "generated", True),
    "deepfm": Model("deepfm_generated.yaml", "generated", True),
    "gan": Model("gan_gaussian.yaml", "generated", True), "dcgan": Model("dcgan_cpu.yaml", "generated"),
}
assert all(m.kind in KINDS for m in MODELS.values())


def load_cfg(model: str, args):
    """`model`'s config with the benchmark's overrides (`bert_nli`'s: `bert_classifier_setup`)."""
    from dlrun.core.config import load_config

    kind, path = MODELS[model].kind, ROOT / "configs" / MODELS[model].config
    overrides = ["trainer.progress=none", *args.set]
    if model == "word2vec":  # the first sentences of PTB (its vocabulary of words seen 10 times among them)
        overrides.append(f"data.num_sentences={args.num_sentences}")
    elif model == "bert":
        overrides.append(f"data.steps_per_epoch={args.bert_steps}")
    elif model == "dcgan" and args.data_dir:  # its images are Fashion-MNIST's first, at the config's count
        overrides.append(f"data.dir={args.data_dir}")
    elif kind in ("image", "sequence"):
        overrides += [f"data.{k}={v}" for k, v in (("num_train", args.num_train), ("num_val", args.num_val)) if v]
        if args.data_dir and kind == "image":
            overrides.append(f"data.dir={args.data_dir}")
    return load_config(path, overrides)  # the other kinds' data is made at their configs' sizes


def bert_classifier_setup(path, overrides, vocab_dir) -> tuple:
    """The (config, data set) of a `bert_nli` experiment's classifier run (configs/bert_snli_cpu.yaml),
    made as experiments/bert_nli.py makes them but without pretraining: the classifier gets the
    pretraining config's encoder sizes, and its pairs are read with the vocabulary the
    pretraining run would keep (its data's, written to `vocab_dir`/vocab.json; a finished run's
    own when the config names one in `experiment.pretrained`). The config is that of the
    experiment's `scratch` run: the network, optimizer and data of `fine_tuned`, whose copied
    weights change the numbers and not the work of an epoch.

    Returns:
        (cfg, data): a `Config` for the generic loop and the `Dataset` of its pairs.
    """
    from dlrun.core.config import derive, load_config, validate_options
    from dlrun.core.data import load_dataset
    from dlrun.core.data.vocab_file import save_vocab
    from dlrun.experiments.bert_nli import SIZES, BertNLIOptions, pretrained_sizes, pretraining_config, quiet

    source = str(path)
    cfg = load_config(path, overrides)
    opts = validate_options(BertNLIOptions, cfg, source)
    if opts.pretrained:
        vocab_from = Path(opts.pretrained).expanduser()
        sizes = pretrained_sizes(vocab_from, source)
    else:
        pre = pretraining_config(opts, source)
        save_vocab(vocab_dir, load_dataset(pre.data, pre.seed).meta["vocab"])
        vocab_from, sizes = Path(vocab_dir), {k: getattr(pre.model, k) for k in SIZES}
    changes = {"data.vocab_from": str(vocab_from), **{f"model.{k}": v for k, v in sizes.items()},
               "name": "scratch", **quiet(), "init_from": None}
    cfg = derive(cfg, changes, source)
    return cfg, load_dataset(cfg.data, cfg.seed)


def torch_runner(model: str):
    """The function `(cfg, data, epochs) -> figures` that trains `model`'s PyTorch reference: one
    warm-up epoch, then `epochs` timed ones (imports torch: call it in the benchmark's worker)."""
    kind = MODELS[model].kind
    if kind == "image":
        import torch_reference

        return lambda cfg, data, epochs: torch_reference.run(model, cfg.optimizer.lr, cfg.data.batch_size, epochs,
                                                             data.x_train, data.y_train, data.x_val, data.y_val,
                                                             cfg.seed, cfg.optimizer.name)
    if kind == "sequence":
        import torch_reference

        return lambda cfg, data, epochs: torch_reference.run_sequence(model, cfg, data, epochs)
    if kind == "vision":
        import vision_reference as v

        def run_fcn(cfg, data, epochs):
            return v.run_fcn(v.fcn_net(cfg.model.stages, cfg.model.stem, data.num_classes), cfg, data, epochs)

        return {"tiny_ssd": v.run_ssd, "fcn": run_fcn}[model]
    if kind == "synthesis":
        import style_transfer_reference as st

        return lambda cfg, data, epochs: st.run_torch(cfg, st.options(cfg).lr_period, epochs)
    if kind == "pretraining":
        import nlp_reference as n

        return {"word2vec": n.run_word2vec, "bert": n.run_bert}[model]
    if kind == "task":
        import nlp_tasks_reference as t

        return {"birnn": t.run_birnn, "textcnn": t.run_textcnn, "decomposable": t.run_decomposable,
                "bert_nli": t.run_bert_classifier}[model]
    if model in ("mf", "gan", "dcgan"):
        import recsys_gan_reference as g

        return {"mf": g.run_mf, "gan": g.run_gan, "dcgan": g.run_dcgan}[model]
    import recsys_reference as r

    return {"neumf": r.run_neumf, "caser": r.run_caser, "fm": r.run_fm, "deepfm": r.run_deepfm}[model]


def run_dlrun_synthesis(cfg, epochs: int) -> dict:
    """Style transfer's synthesis in dlrun: `epochs` timed epochs of the config's lr period of
    steps each, after a warm-up one (`style_transfer_reference.run_dlrun`; no torch)."""
    import style_transfer_reference as st

    return st.run_dlrun(cfg, st.options(cfg).lr_period, epochs)


def epoch_examples(model: str, cfg, data, out: dict) -> dict:
    """What an epoch of `model` trains, added to a worker's figures `out`: "examples" (and for
    the language models "tokens"; where an epoch is a part of its set, "examples_in_set")."""
    from dlrun.core.data.sampling import steps_per_epoch

    kind, batch = MODELS[model].kind, cfg.data.batch_size
    if kind == "synthesis":  # one image per step
        import style_transfer_reference as st

        out["examples"] = st.options(cfg).lr_period
    elif kind == "sequence":  # every example trains once per epoch, the last batch partial
        out["examples"] = data.num_train
        out["tokens"] = data.y_train.size if model == "gru_lm" else int(data.y_train[:, -1].sum())
    elif kind in ("pretraining", "generated"):  # whole batches of the shuffled examples (BERT: its steps)
        out["examples"] = steps_per_epoch(data.sampling, data.num_train, batch) * batch
        out["examples_in_set"] = data.num_train  # word2vec: the centre words drawn from the sentences
        if kind == "pretraining":
            out["vocab"] = data.num_classes
        elif out["examples_trained"] != out["examples"]:
            raise RuntimeError(f"{model} trained {out['examples_trained']} examples an epoch; dlrun's epoch is {out['examples']}")
    elif kind == "task":  # every pair once (inference keeps the last partial batch), or whole batches
        keeps = data.sampling.keeps_partial_batch(data.num_train, batch)
        out["examples"] = data.num_train if keeps else (data.num_train // batch) * batch
    elif kind == "image" or kind == "vision":
        out["examples"] = (data.num_train // batch) * batch  # whole batches
    return out
