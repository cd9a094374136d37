"""The ``skimgcls`` command line: demo, train, predict, evaluate.

Every command prints ``--help``; errors are one line on stderr and a non-zero
exit code (2 for bad input, 130 when interrupted).
"""

import argparse
import contextlib
import csv
import functools
import io
import json
import re
import sys
import warnings
from pathlib import Path

from .utils._progress import bars_on_terminals_only

__all__ = ["build_parser", "main"]

MODEL_FILE = "model.safetensors"


def _classifier_defaults():
    """``CNNClassifier()``'s parameters: the command's defaults are read, not copied."""
    from .classifier import CNNClassifier

    return CNNClassifier().get_params()


def _param_type(kind, default):
    """argparse type of a flag whose default is a CNNClassifier default.

    Numbers are parsed with ``kind``; a keyword default (such as ``'auto'``)
    is accepted as itself, so the flag keeps working whatever the default is.
    """
    def convert(text):
        if isinstance(default, str) and text == default:
            return text
        return kind(text)

    convert.__name__ = kind.__name__  # argparse names the type in its errors
    return convert


class CLIError(Exception):
    """An error the command line reports as one line."""


# -- helpers -----------------------------------------------------------------
def _model_file(model_dir):
    path = Path(model_dir)
    path = path / MODEL_FILE if path.is_dir() else path
    if not path.is_file():
        raise CLIError(
            f"no model found at {path}; pass the MODEL_DIR written by "
            "'skimgcls train --out MODEL_DIR' (or the model file itself)."
        )
    return path


def _freeze(value):
    """``--freeze``: 'none', 'backbone', 'bn' or a number of blocks."""
    return int(value) if value.isdigit() else value


def _size(values):
    if values is None:
        return None
    if len(values) not in (1, 2):
        raise CLIError(f"--size takes one or two integers (H W); got {values}.")
    return (values[0], values[0]) if len(values) == 1 else tuple(values)


def _reader(args, paths=None):
    """The reader of ``args``; with ``paths``, a size and mode picked from the
    files for what the arguments leave open (said on stdout)."""
    from .preprocessing import ImageReader

    size, mode = _size(args.size), args.mode
    if paths is not None and (size is None or mode is None):
        size, mode = _pick_size_and_mode(paths, size, mode)
    return ImageReader(mode=mode, size=size, keep_aspect_ratio=args.keep_aspect_ratio)


_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
MAX_AUTO_SIDE = 224  # a picked size never exceeds this (larger photos are shrunk)


def _pick_size_and_mode(paths, size, mode):
    """A size and a color mode that every file can be read at.

    The size is the most common one when at least half of the files have
    it, else the median height and width, the longer side capped at
    ``MAX_AUTO_SIDE``; the mode is 'L' when every file is gray, else 'RGB'.
    """
    import numpy as np
    from PIL import Image

    sizes, modes = [], set()
    for path in paths:  # headers only; files were checked when listed
        with Image.open(path) as im:
            sizes.append((im.height, im.width))
            modes.add(im.mode)
    if mode is None:
        mode = "L" if modes <= _GRAY_MODES else "RGB"
    if size is None:
        shapes, counts = np.unique(np.asarray(sizes), axis=0, return_counts=True)
        if counts.max() * 2 >= len(sizes):
            size = tuple(int(v) for v in shapes[counts.argmax()])
        else:
            size = tuple(int(v) for v in np.median(np.asarray(sizes), axis=0).round())
        scale = min(1.0, MAX_AUTO_SIDE / max(size))
        size = tuple(max(1, int(round(v * scale))) for v in size)
    what = (f"{len(set(sizes))} different sizes" if len(set(sizes)) > 1
            else f"one size, {sizes[0][0]}x{sizes[0][1]}")
    print(f"Reading the images at {size[0]}x{size[1]} in mode {mode} (the files have "
          f"{what} and the modes {', '.join(sorted(modes))}; pass --size H W and "
          "--mode to choose).")
    return size, mode


def _load_model(model_dir):
    from .persistence import load

    return load(_model_file(model_dir))


def _paths_of(arguments):
    """Expand folders to the image files they hold; keep files as given."""
    from ._io import image_files, warn_ignored

    paths = []
    for arg in arguments:
        path = Path(arg)
        if path.is_dir():
            images, others = image_files(path)
            warn_ignored(path, others)
            paths += [str(p) for p in images]
        elif path.is_file():
            paths.append(str(path))
        else:
            raise CLIError(f"{arg}: no such file or folder.")
    if not paths:
        raise CLIError("no image files found in " + ", ".join(arguments) + ".")
    return paths


# -- commands ------------------------------------------------------------------
def _demo(args):
    from ._demo import run_demo

    run_demo(out=args.out, max_epochs=args.max_epochs, random_state=args.seed)
    return 0


def _training_data(args):
    """Paths, labels (1-D, or an indicator matrix) and the class names.

    A folder has one subfolder per class; a CSV file lists paths and either
    one label column, several 0/1 label columns, or one column of label
    names joined by ``--label-sep`` (the last two are multi-label).
    """
    import numpy as np

    from .datasets import load_image_csv, load_image_folder

    if Path(args.data_dir).is_dir():
        X, y = _checked(load_image_folder, args.command, args.on_error, args.data_dir,
                        lazy=True, verbose=args.verbose)
        classes, counts = np.unique(y, return_counts=True)
        return X, y, classes, counts
    if not Path(args.data_dir).is_file():
        raise CLIError(f"{args.data_dir}: no such folder or CSV file.")
    columns = args.label_column or ["label"]
    label_column = columns[0] if len(columns) == 1 else columns
    X, y = _checked(load_image_csv, args.command, args.on_error, args.data_dir,
                    path_column=args.path_column, label_column=label_column,
                    label_sep=args.label_sep, lazy=True, verbose=args.verbose)
    if args.label_sep is not None:
        from sklearn.preprocessing import MultiLabelBinarizer

        binarizer = MultiLabelBinarizer()
        y = binarizer.fit_transform(y)
        classes = binarizer.classes_
    elif y.ndim == 2:
        classes = np.asarray(columns)
    else:
        classes, counts = np.unique(y, return_counts=True)
        return X, y, classes, counts
    return X, y, classes, y.sum(axis=0)


def _checked(load, command, on_error, *args, **kwargs):
    """Paths and labels from ``load``, every file checked before any training.

    Files that cannot be read are found by ``on_error='skip'`` (a cheap
    decode of each); with ``on_error='raise'`` they are then an error that
    lists them.
    """
    from .exceptions import SkippedImagesWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedImagesWarning)
        X, y = load(*args, on_error="skip", **kwargs)
    for warning in caught:
        if not issubclass(warning.category, SkippedImagesWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
        elif on_error == "raise":
            raise CLIError(str(warning.message).replace(
                "Skipped", "Stopped: found", 1).replace(
                "(on_error='skip')", "(pass --on-error skip to leave them out)", 1))
        else:  # reported, not raised: the skip is what was asked for
            _print_lines(f"skimgcls {command}: warning", str(warning.message))
    return X, y


def _train(args):
    from .classifier import CNNClassifier
    from .persistence import save

    X, y, classes, counts = _training_data(args)
    kind = "labels (multi-label)" if y.ndim == 2 else "classes"
    print(f"Found {len(X)} images of {len(classes)} {kind} in {args.data_dir}: "
          + ", ".join(f"{c} ({n})" for c, n in zip(classes, counts)))
    reader = _reader(args, X)
    augment = {"auto": "auto", "off": None}.get(args.augment)
    if args.augment == "on":
        from .augmentation import RandomAugment

        augment = RandomAugment()
    clf = CNNClassifier(
        module=args.model, max_epochs=args.max_epochs, batch_size=args.batch_size,
        lr=args.lr, validation_fraction=args.validation_fraction or None,
        augment=augment, reader=reader, random_state=args.seed,
        verbose=args.verbose, pretrained=args.pretrained, freeze=args.freeze,
    )
    clf.fit(X, y)
    selected = clf.selection_results_ is not None
    if clf.recipe_ is not None and not selected:
        print("Too few images per class to hold any out and compare recipes: the "
              f"simplest, {clf.recipe_}, trained on all {len(X)} images.")
    elif clf.recipe_ is not None:
        print(f"Recipe chosen on a held-out part of the training images: {clf.recipe_} "
              "(" + ", ".join(
                  f"{name} {score:.3f}" if score == score else f"{name} not trained"
                  for name, score in zip(
                      clf.selection_results_["recipe"],
                      clf.selection_results_["valid_score"])) + ")")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    digest = save(clf, out / MODEL_FILE)
    # A frozen-features recipe takes no epoch: its history is empty.
    history = clf.history_[-1] if len(clf.history_) else {}
    summary = {
        "data_dir": str(args.data_dir), "n_images": int(len(X)),
        "classes": classes.tolist(), "multilabel": bool(y.ndim == 2),
        "model": str(clf.best_params_.get("module", args.model)),
        "recipe": clf.recipe_, "epochs": len(clf.history_),
        "image_shape": list(clf.image_shape_),
        "reader": {"size": list(reader.size), "mode": reader.mode},
        "train_loss": history.get("train_loss"),
        "validation_fraction": clf.validation_fraction_,
        "valid_acc": history.get("valid_acc"), "sha256": digest,
    }
    (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    if summary["valid_acc"] is not None:
        print(f"Validation accuracy: {summary['valid_acc']:.4f} (on "
              f"{clf.validation_fraction_:.0%} of the images, held out)")
    elif selected:
        print(f"The chosen recipe was then refit on all {len(X)} images: for its "
              "accuracy on images it has not seen, run 'skimgcls evaluate' on a "
              "separate folder.")
    else:
        print("No images were held out (validation_fraction_ is None), so there is "
              "no validation accuracy: run 'skimgcls evaluate' on a separate folder, "
              "or pass --validation-fraction 0.1.")
    print(f"Saved the model to {out / MODEL_FILE} (sha256 {digest}).")
    return 0


def _label_names(model_dir, clf):
    """A multi-label model's label names, from the training.json beside it."""
    folder = Path(model_dir)
    summary = (folder if folder.is_dir() else folder.parent) / "training.json"
    if summary.is_file():
        names = json.loads(summary.read_text()).get("classes")
        if isinstance(names, list) and len(names) == len(clf.classes_):
            return names
    return [_plain(c) for c in clf.classes_]


def _predict_multilabel(args, clf, paths):
    """One row per image: the labels above the threshold, every probability."""
    import numpy as np

    images = np.asarray(paths, dtype=object)
    proba = clf.predict_proba(images)
    predicted = clf.predict(images)
    names = _label_names(args.model_dir, clf)
    sep = args.label_sep or "|"
    if args.format == "json":
        rows = [{"path": path,
                 "labels": [names[j] for j in np.flatnonzero(predicted[i])],
                 "probabilities": {str(name): round(float(proba[i, j]), 6)
                                   for j, name in enumerate(names)}}
                for i, path in enumerate(paths)]
        return json.dumps(rows, indent=2) + "\n", len(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "labels", *(f"probability_{name}" for name in names)])
    for i, path in enumerate(paths):
        labels = sep.join(str(names[j]) for j in np.flatnonzero(predicted[i]))
        writer.writerow([path, labels, *(round(float(p), 6) for p in proba[i])])
    return buffer.getvalue(), len(paths)


def _predict(args):
    import numpy as np

    from .classifier import is_multilabel

    clf = _load_model(args.model_dir)
    paths = _paths_of(args.images)
    if is_multilabel(clf):
        text, n_rows = _predict_multilabel(args, clf, paths)
        _write(text, n_rows, args.output)
        return 0
    proba = clf.predict_proba(np.asarray(paths, dtype=object))
    classes = clf.classes_
    order = np.argsort(-proba, axis=1)[:, : args.top_k]
    rows = [
        {"path": path,
         "label": _plain(classes[order[i, 0]]),
         "probability": round(float(proba[i, order[i, 0]]), 6),
         "top_k": [{"label": _plain(classes[j]), "probability": round(float(proba[i, j]), 6)}
                   for j in order[i]]}
        for i, path in enumerate(paths)
    ]
    text = _format_rows(rows, args.format, args.top_k)
    _write(text, len(rows), args.output)
    return 0


def _write(text, n_rows, output):
    if output:
        Path(output).write_text(text)
        print(f"Wrote {n_rows} predictions to {output}.", file=sys.stderr)
    else:
        sys.stdout.write(text)


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _format_rows(rows, fmt, top_k):
    if fmt == "json":
        if top_k == 1:
            rows = [{k: v for k, v in row.items() if k != "top_k"} for row in rows]
        return json.dumps(rows, indent=2) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["path", "label", "probability"]
    for k in range(2, top_k + 1):
        header += [f"label_{k}", f"probability_{k}"]
    writer.writerow(header)
    for row in rows:
        line = [row["path"], row["label"], row["probability"]]
        for alt in row["top_k"][1:]:
            line += [alt["label"], alt["probability"]]
        writer.writerow(line)
    return buffer.getvalue()


def _evaluate(args):
    import numpy as np
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

    from .classifier import is_multilabel
    from .datasets import load_image_folder

    clf = _load_model(args.model_dir)
    if is_multilabel(clf):
        raise CLIError(
            "evaluate reads one class per subfolder, but this model is multi-label. "
            "Score it in Python: clf.predict(X) with sklearn.metrics.f1_score("
            "y, y_pred, average='samples'), hamming_loss or classification_report."
        )
    X, y = _checked(load_image_folder, args.command, args.on_error, args.data_dir,
                    lazy=True)
    y = _labels_as_classes(y, clf.classes_, args.data_dir)
    y_pred = clf.predict(X)
    labels = np.union1d(clf.classes_, np.unique(y))
    accuracy = accuracy_score(y, y_pred)
    print(f"Accuracy on {len(X)} images of {args.data_dir}: {accuracy:.4f}\n")
    print(classification_report(y, y_pred, labels=labels, digits=3, zero_division=0))
    out = Path(args.out or Path(args.model_dir if Path(args.model_dir).is_dir()
                                else Path(args.model_dir).parent))
    out.mkdir(parents=True, exist_ok=True)
    matrix = confusion_matrix(y, y_pred, labels=labels)
    report = {"accuracy": accuracy, "n_images": int(len(X)),
              "labels": [_plain(v) for v in labels], "confusion_matrix": matrix.tolist()}
    (out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    png = out / "confusion_matrix.png"
    _plot_confusion_matrix(matrix, labels, png)
    print(f"Wrote {out / 'evaluation.json'} and {png}.")
    return 0


def _labels_as_classes(names, classes, data_dir):
    """The folder names of ``data_dir`` as labels comparable with ``classes``.

    A model fitted on numeric labels needs folders named after the numbers;
    names that cannot be read as such, or that match none of the model's
    classes, would score every image as wrong: that is an error, not an
    accuracy of 0.
    """
    import numpy as np

    folders = sorted(set(names.tolist()))
    shown = ", ".join(map(str, classes.tolist()[:20]))
    if np.issubdtype(classes.dtype, np.number):
        try:
            names = names.astype(classes.dtype)
        except ValueError:
            raise CLIError(
                f"the model's classes are numbers ({shown}) but the class folders "
                f"of {data_dir} are named {folders[:20]}, which are not numbers of "
                f"type {classes.dtype}. Name the subfolders after the model's "
                f"classes ({data_dir}/{classes[0]}/, ...), or evaluate a model "
                "trained on folders named like these."
            ) from None
    known = np.isin(names, classes)
    if not known.any():
        raise CLIError(
            f"none of the class folders of {data_dir} ({folders[:20]}) is a class "
            f"of the model ({shown}). Name the subfolders after the model's "
            "classes, or evaluate a model trained on folders named like these."
        )
    if not known.all():
        unknown, counts = np.unique(names[~known], return_counts=True)
        listed = ", ".join(f"{u!s} ({c} image{'s' * (c > 1)})"
                           for u, c in zip(unknown[:10].tolist(), counts[:10].tolist()))
        warnings.warn(
            f"{len(unknown)} class folder(s) of {data_dir} are not classes of the "
            f"model: {listed}. The model predicts only its own classes ({shown}), so "
            "their images count as errors; rename a folder that should be one of "
            "them, or remove it to score the others.", UserWarning, stacklevel=2)
    return names


def _plot_confusion_matrix(matrix, labels, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CLIError('evaluate draws the confusion matrix with matplotlib: '
                       'pip install "skimgcls[plots]"') from None
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(matrix, display_labels=labels).plot(ax=ax, colorbar=False)
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- parser --------------------------------------------------------------------
def _add_reading_options(parser):
    parser.add_argument("--mode", choices=["RGB", "L", "RGBA"],
                        help="color mode the images are converted to (default: L "
                        "when every file is gray, else RGB)")
    parser.add_argument("--size", type=int, nargs="+", metavar="N",
                        help="resize every image to H W (or N N) pixels (default: "
                        "the most common size of the files, or their median "
                        f"size, at most {MAX_AUTO_SIDE} pixels a side)")
    parser.add_argument("--keep-aspect-ratio", choices=["pad", "crop"],
                        help="with --size: pad or center-crop instead of stretching")


def _add_on_error(parser):
    parser.add_argument("--on-error", default="skip", choices=["raise", "skip"],
                        help="files that cannot be read (empty, corrupt, "
                        "truncated): skip them with a warning that lists them, or "
                        "stop with an error that lists them; either way before "
                        "any training or prediction (default: %(default)s)")


def build_parser():
    """Return the ``argparse`` parser of the ``skimgcls`` command."""
    parser = argparse.ArgumentParser(
        prog="skimgcls",
        description="Image classification the scikit-learn way: train a CNN on a "
        "folder of images, predict new files, evaluate on a labeled folder.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="train on scikit-learn's bundled digits images, report, save",
        description="Train CNNClassifier on scikit-learn's bundled 8x8 digits "
        "images, print the test accuracy and a classification report, and save "
        "the model.")
    demo.add_argument("--out", default="model-digits",
                      help="model directory (default: %(default)s)")
    defaults = _classifier_defaults()  # read from CNNClassifier, not copied
    demo.add_argument("--epochs", dest="max_epochs",
                      type=_param_type(int, defaults["max_epochs"]),
                      default=defaults["max_epochs"],
                      help="training epochs (default: CNNClassifier's, %(default)s)")
    demo.add_argument("--seed", type=int, default=0,
                      help="random_state (default: %(default)s)")
    demo.set_defaults(func=_demo)

    train = commands.add_parser(
        "train", help="train a model on a folder of images (one subfolder per class) "
        "or on a CSV file of paths and labels",
        description="Train CNNClassifier on DATA_DIR/<label>/<image files>, or on "
        "a CSV file of image paths (relative to the file) and labels, and save it "
        "(without pickle) to MODEL_DIR/model.safetensors, with a training summary "
        "in MODEL_DIR/training.json. A CSV file trains a multi-label model when it "
        "names several 0/1 label columns (--label-column a b c) or joins label "
        "names in one column (--label-sep '|').")
    train.add_argument("data_dir", metavar="DATA",
                       help="folder with one subfolder per class, or a CSV file")
    train.add_argument("--path-column", default="path",
                       help="CSV: column of image paths (default: %(default)s)")
    train.add_argument("--label-column", nargs="+", metavar="COLUMN",
                       help="CSV: the label column (default: label), or several "
                       "0/1 columns, one per label, for multi-label data")
    train.add_argument("--label-sep", metavar="SEP",
                       help="CSV: the label column holds label names joined by SEP "
                       "(e.g. 'beach|people'): multi-label data")
    train.add_argument("--model", default=defaults["module"],
                       help="network: compact_cnn, simple_cnn or a backbone name "
                       "such as efficientnet_lite0 or resnet18 "
                       "(skimgcls.backbones.list_backbones()); default: "
                       "%(default)s, chosen on the training images among "
                       "compact_cnn from scratch, frozen pretrained "
                       "EfficientNet-Lite0 features and its fine-tuning (the "
                       "recipe is printed and written to training.json)")
    train.add_argument("--pretrained", action="store_const", const=True,
                       default=defaults["pretrained"],
                       help="start a backbone from its pretrained weights "
                       "(efficientnet_lite0's install with skimgcls: no download)")
    train.add_argument("--freeze", default="none", type=_freeze,
                       help="'backbone' trains only the new head, 'bn' keeps the "
                       "BatchNorm layers' pretrained weights and statistics, an int "
                       "freezes that many leading blocks (default: %(default)s)")
    train.add_argument("--out", required=True, metavar="MODEL_DIR",
                       help="directory to write the model to")
    # Training defaults are CNNClassifier's own, read from it, not copied.
    for flag, param, kind, what in (
            ("--epochs", "max_epochs", int, "training epochs"),
            ("--batch-size", "batch_size", int, "images per step"),
            ("--lr", "lr", float, "learning rate"),
            ("--validation-fraction", "validation_fraction", float,
             "fraction of the images held out to report validation accuracy in "
             "training.json; 'auto' holds one out only for large data sets, and "
             "stops training early on it (see CNNClassifier's validation_fraction "
             "and early_stopping); a fraction you give trains the whole budget; 0 "
             "for none")):
        train.add_argument(flag, dest=param, type=_param_type(kind, defaults[param]),
                           default=defaults[param],
                           help=f"{what} (default: CNNClassifier's, %(default)s)")
    train.add_argument("--augment", nargs="?", const="on", default="auto",
                       choices=("auto", "on", "off"),
                       help="augment training images with RandomAugment's defaults: "
                            "'auto' (default) for compact_cnn from scratch, 'on' (or "
                            "--augment alone) for any network, 'off' never")
    train.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    train.add_argument("--verbose", type=int, default=1,
                       help="0 silent, 1 progress bars (default: %(default)s)")
    _add_reading_options(train)
    _add_on_error(train)
    train.set_defaults(func=_train)

    predict = commands.add_parser(
        "predict", help="predict the labels of image files",
        description="Predict the label of each image (files, or folders searched "
        "recursively) with a model written by 'skimgcls train'.")
    predict.add_argument("model_dir", metavar="MODEL_DIR")
    predict.add_argument("images", nargs="+", metavar="IMAGES")
    predict.add_argument("--format", default="csv", choices=["csv", "json"],
                         help="default: %(default)s")
    predict.add_argument("--output", "-o", help="write to this file, not stdout")
    predict.add_argument("--top-k", type=int, default=1,
                         help="also list the k most probable labels "
                         "(default: %(default)s; single-label models)")
    predict.add_argument("--label-sep", metavar="SEP",
                         help="multi-label models: join the predicted labels with "
                         "SEP in CSV output (default: '|'); every label's "
                         "probability gets its own column")
    predict.set_defaults(func=_predict)

    evaluate = commands.add_parser(
        "evaluate", help="accuracy, report and confusion matrix on a labeled folder",
        description="Evaluate a model on DATA_DIR/<label>/<image files>: print the "
        "accuracy and a classification report, write evaluation.json and "
        "confusion_matrix.png.")
    evaluate.add_argument("model_dir", metavar="MODEL_DIR")
    evaluate.add_argument("data_dir", metavar="DATA_DIR")
    evaluate.add_argument("--out", help="directory for the report files "
                          "(default: MODEL_DIR)")
    _add_on_error(evaluate)
    evaluate.set_defaults(func=_evaluate)
    return parser


def main(argv=None):
    """Run the ``skimgcls`` command; return its exit code.

    Parameters
    ----------
    argv : list of str or None, default=None
        The arguments; None reads ``sys.argv[1:]``.

    Returns
    -------
    code : int
        0 on success, 2 for bad input, 130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "top_k", 1) < 1:
        parser.error("--top-k must be at least 1")
    prefix = f"skimgcls {args.command}"
    try:
        with (warnings.catch_warnings(), bars_on_terminals_only(),
              contextlib.redirect_stdout(sys.stdout if sys.stdout.isatty()
                                         else _Uncolored(sys.stdout))):
            warnings.showwarning = functools.partial(_show_warning, prefix)
            return args.func(args)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, TypeError, OSError, ImportError) as exc:
        _print_lines(f"{prefix}: error", str(exc))
        return 2


class _Uncolored(io.TextIOBase):
    """``stream`` without ANSI color codes: output piped to a file or a log
    (skorch colors the best values of the epoch table)."""

    _CODES = re.compile(r"\x1b\[[0-9;]*m")

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        return self.stream.write(self._CODES.sub("", text))

    def flush(self):
        self.stream.flush()


def _print_lines(prefix, message):
    """``message`` on stderr, one line per line of it (a list of files stays
    a list), each starting with ``prefix``."""
    lines = [" ".join(line.split()) for line in message.splitlines()]
    text = "\n".join(f"{prefix}: {line}" for line in lines if line)
    sys.stderr.flush()
    print(text, file=sys.stderr)


def _show_warning(prefix, message, category, filename, lineno, file=None, line=None):
    _print_lines(f"{prefix}: warning", str(message))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
