"""`dlrun predict`: use a trained run's last checkpoint, as its model family allows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlrun.cli.errors import fail, guarded


def predict(
    ctx: typer.Context,
    run_dir: Annotated[Path, typer.Argument(help="A run directory with a checkpoint (from dlrun train).")],
    sentences: Annotated[Optional[list[str]], typer.Argument(help="Translation models: source sentences to translate; text classifiers: texts to label.")] = None,
    *,
    prefix: Annotated[Optional[str], typer.Option(help="Language models: the text to continue (default: the config's).")] = None,
    tokens: Annotated[Optional[int], typer.Option(min=0, help="Language models: tokens to predict (default: the config's).")] = None,
    beam: Annotated[Optional[int], typer.Option(min=1, help="Translation models: beam size (default: greedy decoding).")] = None,
    val: Annotated[Optional[int], typer.Option(min=1, help="Image classifiers: predict this many validation images.")] = None,
    user: Annotated[Optional[int], typer.Option(min=1, help="Recommenders: the user (numbered from 1, as in u.data) to recommend items to.")] = None,
    top: Annotated[int, typer.Option(min=1, help="Recommenders: how many items to recommend; word embeddings: how many words.")] = 10,
    images: Annotated[Optional[Path], typer.Option(help="Image classifiers: classify every image in this folder (recursively).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="With --images: also write path,label,probability to this CSV file.")] = None,
    similar: Annotated[Optional[str], typer.Option(help="Word embeddings: the words nearest to this one by cosine.")] = None,
    analogy: Annotated[Optional[tuple[str, str, str]], typer.Option(
        help="Word embeddings: A B C, the words d with a : b :: c : d (nearest to b - a + c).")] = None,
) -> None:
    """Use a trained run's last checkpoint: continue text, translate sentences, label
    validation images (writing RUN_DIR/predictions.png) or the images of a folder (printing
    path, label and probability), recommend items to a user, or find a word embedding's
    nearest words and analogies (D2L 14.4.3, 14.7), or label texts with a text classifier
    (printing label, probability and text: D2L 15.2-15.5)."""
    from dlrun.core.training.inference import continue_text, load_run, model_kind, predict_images, recommend
    from dlrun.core.training.text_inputs import TEXT_INPUTS

    with guarded(ctx):
        run = load_run(run_dir)
        kind = ("word_embedding" if run.cfg.model.name == "skip_gram" else
                "text_classifier" if run.cfg.data.name in TEXT_INPUTS else model_kind(run.setup, run.data))
        given = {"--similar": similar is not None, "--analogy": analogy is not None, "SENTENCES": bool(sentences), "--prefix": prefix is not None, "--tokens": tokens is not None,
                 "--beam": beam is not None, "--val": val is not None, "--user": user is not None,
                 "--images": images is not None, "--out": out is not None}
        takes = {"language_model": {"--prefix", "--tokens"}, "translation": {"SENTENCES", "--beam"},
                 "classifier": {"--val", "--images", "--out"}, "rating": {"--user"}, "ranking": {"--user"},
                 "word_embedding": {"--similar", "--analogy", "--top"}, "text_classifier": {"SENTENCES"}}.get(kind, set())
        wrong = [k for k, v in given.items() if v and k not in takes]
        if not takes or wrong:
            what = f"it takes {', '.join(sorted(takes))}" if takes else "dlrun predict has nothing to do with it"
            raise fail(f"{run_dir}: a {kind.replace('_', ' ')} run; {what}"
                       + (f", not {', '.join(wrong)}" if wrong and takes else ""), 2)
        if kind == "language_model":
            data_cfg = run.cfg.data
            typer.echo(continue_text(run.setup, run.state, run.data, prefix if prefix is not None else data_cfg.prefix,
                                     tokens if tokens is not None else data_cfg.predict_tokens))
        elif kind == "text_classifier":
            show_labels(run, run_dir, sentences)
        elif kind == "word_embedding":
            show_neighbours(run, run_dir, similar, analogy, top)
        elif kind in ("rating", "ranking"):
            if user is None:
                raise fail(f"{run_dir}: a recommender run; give --user U (and --top N) to recommend items", 2)
            what = "predicted rating" if kind == "rating" else "score"
            items = recommend(run, user, top)  # refuses a user the data does not have, before anything is printed
            typer.echo(f"user {user}: the {top} items with the highest {what} among those the user has not rated")
            for item, score in items:
                typer.echo(f"  item {item:>6}  {score:.4f}")
        elif kind == "translation":
            from dlrun.core.training.translate import translate

            if not sentences:
                raise fail(f"{run_dir}: a translation run; give the sentences to translate, e.g. \"go .\" \"i lost .\"", 2)
            for source, target in zip(sentences, translate(run.setup.model.translator, run.state.params, run.data.meta,
                                                            sentences, beam)):
                typer.echo(f"{source} => {' '.join(target)}")
        elif images is not None:
            classify_into(run, images, out)
        else:
            from dlrun.core.report.plots import plot_predictions

            if out is not None:
                raise fail("--out goes with --images (the CSV of a folder's predictions)", 2)
            if val is None:
                raise fail(f"{run_dir}: an image classifier run; give --val N to label N validation images, or --images DIR", 2)
            p = predict_images(run, val)
            plot_predictions(run_dir / "predictions.png", p.images, p.labels, p.predictions,
                             f"{run.cfg.name}: {sum(a == b for a, b in zip(p.labels, p.predictions))}/{len(p.labels)} right")
            typer.echo(f"accuracy on the first {len(p.labels)} validation images: {p.accuracy:.4f}\n"
                       f"wrote {run_dir / 'predictions.png'}")


def show_labels(run, run_dir: Path, texts: list[str] | None) -> None:
    """Print label<TAB>probability<TAB>text for each text, as the run's classifier labels it."""
    from dlrun.core.training.text_inputs import classify_texts

    if not texts:
        raise fail(f"{run_dir}: a text classifier run; give the texts to label, e.g. \"this movie is so great\"", 2)
    for text, (label, p) in zip(texts, classify_texts(run, texts)):
        typer.echo(f"{label}\t{p:.4f}\t{text}")


def show_neighbours(run, run_dir: Path, similar: str | None, analogy: tuple[str, str, str] | None, top: int) -> None:
    """Print the `top` words nearest to `similar` by cosine, and those completing `analogy`,
    from the run's centre vectors."""
    from dlrun.core.nn.word2vec import word_vectors

    if similar is None and analogy is None:
        raise fail(f"{run_dir}: a word embedding run; give --similar WORD or --analogy A B C (and --top N)", 2)
    vectors = word_vectors(run.state.params, run.data.meta["vocab"])
    try:  # every word is looked up before anything is printed
        near = vectors.similar(similar.lower(), top) if similar is not None else None
        completions = vectors.analogy(*(w.lower() for w in analogy), top) if analogy is not None else None
    except KeyError as err:
        raise fail(f"{run_dir}: {err.args[0]}", 2) from None
    if near is not None:
        typer.echo(f"nearest to {similar.lower()}:")
        for word, cos in near:
            typer.echo(f"  cosine {cos:.3f}: {word}")
    if completions is not None:
        typer.echo("{} : {} :: {} :".format(*(w.lower() for w in analogy)))
        for word, cos in completions:
            typer.echo(f"  cosine {cos:.3f}: {word}")


def classify_into(run, images: Path, out: Path | None) -> None:
    """Print path<TAB>label<TAB>probability for each image under `images` (and write them to
    `out`); files that are not images are named on stderr."""
    from dlrun.core import disk
    from dlrun.core.training.classify import classified_csv, classify_folder

    result = classify_folder(run, images)
    for path, why in result.bad:
        typer.echo(f"warning: {path}: not an image ({why}); skipped", err=True)
    if not result.paths:
        raise fail(f"{images}: no image could be read", 2)
    for path, label, p in zip(result.paths, result.labels, result.probabilities):
        typer.echo(f"{path}\t{label}\t{p:.4f}")
    if out is not None:
        disk.write_atomic(out, classified_csv(result))
        typer.echo(f"wrote {out}", err=True)
