"""``open_run(path) -> Run``: a scanned run as a notebook works with it.

A ``Run`` reads the same ``Overview`` that ``mikata audit``, ``mikata report`` and ``mikata serve``
show, so a number in a notebook is the number on the page. Tables come back as pandas DataFrames
with class names (restyle, filter, join them as you like); maps come from the run's own
``MapService`` (computed once, cached in the run). In Jupyter a ``Run`` shows its summary and
its row-normalized confusion matrix.

Example:
    >>> run = open_run("mikata-demo/run")                                  # doctest: +SKIP
    >>> run.summary()["accuracy"]                                          # doctest: +SKIP
    0.88
    >>> run.label_issues().head()                                          # doctest: +SKIP
    >>> df = run.to_pandas()      # one row per scanned image              # doctest: +SKIP
"""

from __future__ import annotations

import html
import io
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from mikata.analysis.overview import Overview
from mikata.runs.store import RunStore, RunStoreError

if TYPE_CHECKING:  # pandas and PIL are imported where they are used
    import pandas as pd
    from PIL import Image

    from mikata.analysis.binary import Curves
    from mikata.analysis.issues import DatasetIssues
    from mikata.analysis.gallery import Gallery
    from mikata.presentation.maps import MapService
    from mikata.analysis.view import RunView
    from mikata.models.handle import ModelHandle
    from mikata.models.source import ModelSource
    from mikata.notebook import ImageList


class Run:
    """One run directory made by ``mikata scan``; ``split`` restricts every view to one split.

    ``model`` (a ``ModelHandle``, a spec you type, or a ``ModelSource``) is the model for maps when the
    run's own cannot be found or must not be loaded from the run's manifest (code specs are never taken
    from files); ``device`` is where maps are computed. ``path`` may be a ``RunView`` (its selection).

    Example:
        >>> run = mikata.Run("runs/a")
        >>> run.to_pandas()[["label", "predicted", "correct"]].shape
        (12, 3)
    """

    def __init__(self, path: "str | os.PathLike | RunView", split: str | None = None,
                 model: "ModelHandle | str | ModelSource | None" = None, device: str | None = "cpu"):
        from mikata.analysis.view import RunView, as_view
        from mikata.models.source import ModelSource

        # the run and its row selection: every table below reads it (a RunStoreError for a non-run)
        self.view = as_view(path if isinstance(path, RunView) else Path(path).expanduser().resolve(), split)
        self.path = self.view.run_dir
        self.split = self.view.split
        self.source = ModelSource.of(model, device=device)  # the model for maps and where they are computed
        self.device = self.source.device

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}{f', split={self.split!r}' if self.split else ''})"

    # ------------------------------------------------------------------ the shared numbers
    @property
    def overview(self) -> Overview:
        """The run's ``Overview`` (recomputed when a scan has committed rows since the last read).

        Example:
            >>> mikata.open_run("runs/a").overview.accuracy
            0.8333333333333334
        """
        return self.view.overview(top_issues=None)

    @property
    def class_names(self) -> list[str]:
        """The model's class names, in class-id order (every class of the model, also those without images).

        Example:
            >>> mikata.open_run("runs/a").class_names[967]
            'espresso'
        """
        return list(self.overview.class_names)

    def _class(self, cls: int | str) -> int:
        from mikata.models.classes import class_index

        return class_index(self.class_names, cls)

    def summary(self) -> dict:
        """Images, skipped files, accuracy, top-5 accuracy (only where there are more than 5 classes),
        class count and imbalance: the numbers at the top of ``mikata audit``.

        Example:
            >>> s = mikata.open_run("runs/a").summary()
            >>> s["images"], s["classes"], round(s["accuracy"], 3)
            (12, 4, 0.833)
        """
        ov = self.overview
        out = {"run": str(self.path), "images": len(ov.data), "skipped": len(ov.skipped),
               "accuracy": ov.accuracy, "classes": len(ov.present), "imbalance": ov.imbalance,
               "label_issues": ov.label_issues_total}
        if ov.data.num_classes > 5:
            out["top5_accuracy"] = ov.top5_accuracy
        if ov.trained_rows:  # rows the model was trained on: not out-of-sample (runs.heldout)
            out["trained_rows"], out["trained_note"] = ov.trained_rows, ov.trained_note
        curves = self.curves() if ov.data.num_classes == 2 else None
        if curves is not None:
            out.update(positive=curves.positive_name, auroc=curves.auroc, average_precision=curves.average_precision)
        return out

    def curves(self, positive: int | str | None = None) -> "Curves | None":
        """The precision-recall and ROC curves of ``positive`` (default on a two-class run: the minority
        class; on more classes, a named class gives its one-vs-rest curves, none gives None).

        ``c.auroc``, ``c.average_precision``, ``c.roc()``, ``c.pr()``, ``c.at(0.3).recall``,
        ``c.best_f1().threshold``: see ``mikata.analysis.binary``.

        Example:
            >>> c = mikata.open_run("runs/a").curves("espresso")    # one-vs-rest on a run of more than two classes
            >>> round(c.auroc, 3), round(c.average_precision, 3)
            (1.0, 1.0)
        """
        return self.view.curves(positive)

    def confusion(self, normalize: str | None = "row") -> "pd.DataFrame":
        """The confusion matrix over the classes that have images, rows = true class.

        ``normalize="row"`` divides each row by its total (recall on the diagonal); ``None`` gives counts.

        Example:
            >>> mikata.open_run("runs/a").confusion().shape         # the classes the run holds
            (4, 4)
        """
        import pandas as pd

        from mikata.errors import ChoiceError

        if normalize not in ("row", None):
            raise ChoiceError("normalize option", normalize, ["row", "None"])
        ov = self.overview
        p = ov.present
        matrix = ov.confusion_normalized if normalize == "row" else ov.confusion
        names = [ov.class_names[c] for c in p]
        return pd.DataFrame(matrix[np.ix_(p, p)], index=pd.Index(names, name="true"),
                            columns=pd.Index(names, name="predicted"))

    def pairs(self) -> "pd.DataFrame":
        """Mutually confused class pairs, most confused first: ``a``, ``b``, ``a_as_b``, ``b_as_a``, ``total``.

        Example:
            >>> mikata.open_run("runs/a").pairs()[["a", "b", "a_as_b"]].values.tolist()
            [['tiger cat', 'Egyptian cat', 2]]
        """
        import pandas as pd

        names = self.overview.class_names
        rows = [{"a": names[a], "b": names[b], "a_as_b": ab, "b_as_a": ba, "total": ab + ba}
                for a, b, ab, ba in self.overview.confused_pairs]
        return pd.DataFrame(rows, columns=["a", "b", "a_as_b", "b_as_a", "total"])

    def class_like(self, cls: int | str, k: int = 5, least: bool = False) -> "pd.DataFrame":
        """The ``k`` images labeled ``cls`` with the highest (or, ``least=True``, lowest) P(cls).

        The least class-like images of a class are where mislabeled and atypical images hide.

        Example:
            >>> mikata.open_run("runs/a").class_like("espresso", k=2)["label"].tolist()
            ['espresso', 'espresso']
        """
        from mikata.analysis.audit import class_like

        c = self._class(cls)
        d = self.overview.data
        most, fewest = class_like(d, c, k)
        return self._image_table(fewest if least else most, prob_of=c)

    def errors(self, cls: int | str | None = None, k: int = 10) -> "pd.DataFrame":
        """Wrong predictions (of images labeled ``cls``, or all), most confident first.

        Example:
            >>> mikata.open_run("runs/a").errors(k=3)[["label", "predicted"]].values.tolist()
            [['tiger cat', 'Egyptian cat'], ['tiger cat', 'Egyptian cat']]
        """
        from mikata.analysis.audit import confident_errors

        rows = confident_errors(self.overview.data, None if cls is None else self._class(cls), k)
        return self._image_table(rows)

    def label_issues(self) -> "pd.DataFrame":
        """Suspected label errors (confident learning), most suspicious first: the given label and its
        probability, the model's top class and its probability, the issue score (lower is more
        suspicious), the split, and the most probable class with images (``suggested``).

        The same list as ``mikata audit`` (which prints its top 20) and the report and web app.

        Example:
            >>> len(mikata.open_run("runs/a").label_issues())        # none suspected in these twelve photos
            0
        """
        import pandas as pd

        cols = ["id", "path", "split", "label", "label_prob", "model_class", "model_prob", "score", "suggested",
                "suggested_prob"]
        return pd.DataFrame([{k: i[k] for k in cols} for i in self.overview.label_issues], columns=cols)

    def _image_table(self, rows: Sequence[int], prob_of: int | None = None) -> "pd.DataFrame":
        import pandas as pd

        d = self.overview.data
        names = d.class_names
        out = []
        for r in rows:
            entry = {"id": int(d.ids[r]), "path": d.paths[r], "label": names[d.labels[r]],
                     "predicted": names[d.preds[r]], "pred_prob": float(d.probs[r, d.preds[r]])}
            if prob_of is not None:
                entry[f"p({names[prob_of]})"] = float(d.probs[r, prob_of])
            out.append(entry)
        return pd.DataFrame(out)

    # ------------------------------------------------------------------------- images and maps
    def images(self, ids: int | Sequence[int]) -> "ImageList":
        """The stored images of these row ids, decoded as the model's input mode: a list of PIL images
        that Jupyter shows as a row of thumbnails captioned with their file names.

        Example:
            >>> [img.size for img in mikata.open_run("runs/a").images([1, 2])]
            [(405, 270), (406, 270)]
        """
        from mikata.presentation.media import image_files
        from mikata.data.images import load_image
        from mikata.data.preprocessing import Preprocessing
        from mikata.notebook import ImageList

        ids = [int(ids)] if isinstance(ids, (int, np.integer)) else [int(i) for i in ids]
        mode = Preprocessing.from_identity(self._identity).mode
        with RunStore.open(self.path) as store:
            paths = image_files(store, ids)
        return ImageList([load_image(paths[i], mode) for i in ids], [f"#{i} {paths[i].name}" for i in ids])

    def show(self, what: "Sequence[int] | int | pd.DataFrame | RunView", map: str | None = None,
             cls: int | str | None = None, limit: int = 48) -> "Gallery":
        """A gallery of rows for the notebook (``analysis.gallery``): ``what`` is ids, a DataFrame with an
        ``id`` column (``run.label_issues()``, a filtered ``run.to_pandas()``) or a ``RunView`` (its rows),
        in that order, at most ``limit`` cards. Each card: thumbnail, file name, label, prediction and its
        probability; ``map`` ("gradcam", any method) draws that map of ``cls`` (default: the prediction)
        over each image, with the legend under the gallery.

        Example:
            >>> run = mikata.open_run("runs/a", model=handle)
            >>> df = run.to_pandas()
            >>> gallery = run.show(df[~df.correct].sort_values("pred_prob"), map="gradcam")  # errors, least sure first
            >>> len(gallery), gallery.map
            (2, 'gradcam')
        """
        from mikata.analysis.gallery import build_gallery, wanted_ids

        ids = wanted_ids(what)
        whole = self.view.select_all().overview(top_issues=None)
        return build_gallery(self.path, whole, ids, map, cls, self.maps_service if map else None, limit)

    @cached_property
    def _identity(self) -> dict:
        with RunStore.open(self.path) as store:
            return store.manifest["identity"]

    @cached_property
    def maps_service(self) -> "MapService":
        """The run's ``MapService`` (loads the run's model on the first map that is not cached).

        Example:
            >>> service = mikata.open_run("runs/a", model=handle).maps_service
            >>> type(service).__name__
            'MapService'
        """
        from mikata.presentation.maps import MapService

        return MapService(self.path, source=self.source)  # a typed spec is loaded and its weights hash checked

    def map(self, image_id: int, method: str = "gradcam", cls: int | str | None = None,
            layer: str | None = None) -> np.ndarray:
        """The ``(H, W)`` map of one image for one class (default: the predicted class), cached in the run.

        Example:
            >>> m = mikata.open_run("runs/a", model=handle).map(1, "gradcam")   # the predicted class's map
            >>> m.shape, float(m.min()) >= 0
            ((224, 224), True)
        """
        return self.maps_service.map(int(image_id), method, cls, layer)

    def overlay(self, image_id: int, method: str = "gradcam", cls: int | str | None = None,
                layer: str | None = None) -> "Image.Image":
        """The map drawn over the model's view of the image, as a PIL image; its ``legend`` attribute is
        the map's legend (``display.MapScale.legend``), and Jupyter shows it with a caption (image,
        method, class) and that legend.

        Example:
            >>> img = mikata.open_run("runs/a", model=handle).overlay(1, "gradcam", cls="tiger cat")
            >>> img.size, img.legend["class"]
            ((224, 224), 'tiger cat')
        """
        from PIL import Image

        png, legend = self.maps_service.overlay(int(image_id), method, cls, layer)
        image = Image.open(io.BytesIO(png))
        image.load()
        name = self.view.select_all().overview(top_issues=None)
        row = {int(i): r for r, i in enumerate(name.data.ids)}.get(int(image_id))
        file = os.path.basename(str(name.data.paths[row])) if row is not None else ""
        caption = f"#{int(image_id)} {file}: {legend['method']} map for {legend['class']}"
        image.legend = legend  # type: ignore[attr-defined]
        # an instance attribute, so the value stays a plain PIL image: IPython looks _repr_html_ up on it
        image._repr_html_ = lambda: _overlay_html(png, caption, legend)  # type: ignore[attr-defined]
        return image

    # ------------------------------------------------------------------------------- concepts
    def concepts(self) -> "pd.DataFrame":
        """One row per concept of the run's concept atlas (``mikata concepts``): class, concept, importance
        (share of the class's evidence), presence, center, spread, off_center, area, the deletion test, whether it is a
        suspected shortcut, the evidence sentence and a person's review. Raises when there is no current atlas.

        Example:
            >>> table = mikata.open_run("runs/a").concepts()          # after `mikata concepts runs/a`
            >>> sorted(set(table["class"]))
            ['daisy', 'espresso', 'palace', 'tiger cat']
        """
        import pandas as pd

        from mikata.concepts.ondemand import _atlas
        from mikata.concepts.reviews import concept_reviews

        atlas = _atlas(self.path)
        reviews = concept_reviews(self.path)
        rows = []
        for cls, entries in atlas.doc["classes"].items():
            for e, off in zip(entries, atlas.doc["off_center"][cls]):
                rows.append({"class": cls, "concept": e["concept"], "importance": e["importance"],
                             "presence": e["presence"], "center_x": e["location"]["center"][0],
                             "center_y": e["location"]["center"][1], "spread": e["location"]["spread"],
                             "off_center": off,
                             "area": e["area"], "flip_rate": e["deletion"]["flip_rate"],
                             "mean_drop": e["deletion"]["mean_drop"], "deletion_images": e["deletion"]["images"],
                             "shortcut": e["shortcut"], "evidence": e["evidence"],
                             "review": reviews.get(e["concept"], {}).get("verdict"),
                             "exemplars": [x["id"] for x in e["exemplars"]]})
        return pd.DataFrame(rows)

    def concept_map(self, image_id: int, concept: str) -> np.ndarray:
        """Where ``concept`` ("Coat/2") is in image ``image_id``: ``(H, W)`` over the original image.

        Example:
            >>> run = mikata.open_run("runs/a", model=handle)
            >>> run.concept_map(1, run.concepts()["concept"][0]).ndim
            2
        """
        from mikata.concepts import concept_heatmap

        return concept_heatmap(self.path, int(image_id), concept, model=self._concepts_model(), device=self.device)

    def _concepts_model(self) -> "ModelHandle | str | None":
        """The model concepts use for images the atlas did not sample: the handle or spec this Run was given."""
        return self.source.handle if self.source.handle is not None else self.source.spec

    def strategies(self, cls: int | str) -> "pd.DataFrame":
        """The class's strategies (images clustered by how the model recognises them): size, accuracy,
        tightness, whether it is a Clever-Hans candidate, exemplar ids and the mean share of each concept.

        Example:
            >>> mikata.open_run("runs/a").strategies("espresso").columns[:3].tolist()
            ['strategy', 'size', 'accuracy']
        """
        import pandas as pd

        from mikata.concepts.ondemand import _atlas

        atlas = _atlas(self.path)
        name = atlas._name(atlas.class_id(cls if not isinstance(cls, str) else self.class_names[self._class(cls)]))
        rows = [{"strategy": s["strategy"], "size": s["size"], "accuracy": s["accuracy"],
                 "tightness": s.get("tightness"), "clever_hans": s.get("clever_hans", False),
                 "exemplars": s["exemplars"], **{f"share:{k}": v for k, v in s["concepts"].items()}}
                for s in atlas.doc["strategies"][name]]
        return pd.DataFrame(rows)

    def fields(self) -> list[str]:
        """The run's per-image fields: the extra columns of the CSV manifest it was scanned from.

        Example:
            >>> mikata.open_run("runs/a").fields()                    # runs/a was scanned from photos.csv
            ['crop']
        """
        return self.view.field_names()

    def group_by(self, field: str) -> "pd.DataFrame":
        """Images, errors, accuracy and per-class recall for each value of ``field``, lowest accuracy first
        (``analysis.fields.group_by``, what ``mikata audit --group-by`` prints).

        Example:
            >>> mikata.open_run("runs/a").group_by("crop")[["crop", "images"]].values.tolist()
            [['whole', 4], ['cropped', 8]]
        """
        import pandas as pd

        from mikata.analysis.fields import group_by

        rows = []
        for g in group_by(self.overview.data, field):
            rows.append({field: g["value"], "images": g["images"], "errors": g["errors"], "accuracy": g["accuracy"],
                         **{f"recall:{c['class']}": c["recall"] for c in g["per_class"]}})
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------------------- one table
    def issues(self, thresholds: dict[str, float] | None = None) -> "DatasetIssues":
        """Every dataset issue type scored for every image (``analysis.issues.DatasetIssues``): outliers,
        duplicates and leaks, image quality, class imbalance, weak groups, label issues. Jupyter shows
        it as a table of counts per type with thumbnails of the worst images of each.

        Example:
            >>> found = mikata.open_run("runs/a").issues()
            >>> "outlier" in found.types, len(found.data)
            (True, 12)
        """
        import dataclasses

        return dataclasses.replace(self.view.issues(thresholds), thumbnails=self._thumbnails)

    def _thumbnails(self, ids: Sequence[int], size: int = 64) -> dict[int, bytes]:
        """Thumbnails (PNG or JPEG bytes) of the row ids whose files can still be read."""
        from mikata.presentation.media import image_files, thumbnail

        with RunStore.open(self.path) as store:
            files = image_files(store, [int(i) for i in ids])
        out = {}
        for i, path in files.items():
            try:
                out[i] = thumbnail(path, size)
            except Exception:  # noqa: BLE001 - a file changed since the scan: no thumbnail for it
                continue
        return out

    def to_pandas(self, dataset_issues: bool = True) -> "pd.DataFrame":
        """One row per scanned image: id, path, split, label, prediction, correct, the label's and the
        predicted class's probability, margin (P(label) minus the largest other probability; negative
        means wrong), label quality (cleanlab's self-confidence: low = suspicious), whether it is a
        suspected label error with its suggested label (none once a person marked the label fine), any review
        from the web app (``review``, ``review_suggested``, and ``reviewed_label``: the given label for "fine",
        the reviewer's class for "wrong"), a ``TYPE_score``
        and ``TYPE_issue`` column per dataset-issue type (``dataset_issues=False`` leaves them out), and
        one ``p:CLASS`` column per class.

        Example:
            >>> df = mikata.open_run("runs/a").to_pandas()
            >>> df.shape[0], {"path", "label", "predicted", "outlier_score", "crop"} <= set(df.columns)
            (12, True)
        """
        import pandas as pd

        from mikata.analysis.audit import label_quality, reviewed_label

        ov = self.overview
        d = ov.data
        n, names = len(d), d.class_names
        rows = np.arange(n)
        label_p = d.probs[rows, d.labels]
        others = d.probs.copy()
        others[rows, d.labels] = -np.inf
        issues = {int(i["row"]): i for i in ov.label_issues}
        quality = label_quality(d)
        with RunStore.open(self.path) as store:
            reviews = {r["id"]: r for r in store.reviews()}
        review = [reviews.get(int(i)) for i in d.ids]
        frame = pd.DataFrame({
            # object dtype: a non-UTF-8 name stays the str that opens the file (an Arrow string column refuses it)
            "id": d.ids, "path": pd.Series(list(d.paths), dtype=object), "split": d.splits,
            "label": pd.Categorical.from_codes(d.labels, names), "predicted": pd.Categorical.from_codes(d.preds, names),
            "correct": d.labels == d.preds, "label_prob": label_p, "pred_prob": d.probs[rows, d.preds],
            "margin": label_p - others.max(1), "label_quality": quality,
            "label_issue": [r in issues for r in range(n)],
            # a person's "fine" overrides the audit: such a row exports its given label and no suggestion
            "suggested": [issues[r]["suggested"] if r in issues and not (review[r] and review[r]["verdict"] == "fine")
                          else None for r in range(n)],
            "review": [r["verdict"] if r else None for r in review],
            "review_suggested": [names[r["suggested"]] if r and r["verdict"] == "wrong" and r["suggested"] is not None
                                 else None for r in review],
            "reviewed_label": [None if (c := reviewed_label(r, d.labels[k])) is None else names[c]
                               for k, r in enumerate(review)],
        })
        probs = pd.DataFrame(d.probs, columns=[f"p:{c}" for c in names])
        parts = [probs]
        if dataset_issues:
            parts.insert(0, pd.DataFrame(self.view.issues().columns()).drop(columns=["label_score", "label_issue"]))
        # A manifest's extra columns, as text. One named like a column of the table (``id``, ``p:cat``,
        # ``outlier_score``, ``map_path``) or like another field's column gets the prefix ``field:`` until it
        # is unique, so no table has two columns of one name (CSV headers, Parquet).
        taken = {*frame.columns, *(c for part in parts for c in part.columns), "map_path"}
        extra = {}
        for name, values in self.view.field_values().items():
            column = name
            while column in taken:
                column = f"field:{column}"
            taken.add(column)
            extra[column] = values
        frame = pd.concat([frame, pd.DataFrame(extra, index=frame.index)], axis=1) if extra else frame
        return pd.concat([frame, *parts], axis=1)

    # ---------------------------------------------------------------------------------- Jupyter
    def _repr_html_(self) -> str:
        s = self.summary()
        head = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>"
                       for k, v in s.items() if k != "run")
        cm = self.confusion("row")
        return (f"<div><b>mikata run</b> <code>{html.escape(str(self.path))}</code>"
                f"<table>{head}</table><p>row-normalized confusion (rows: true class)</p>"
                f"{cm.style.format('{:.2f}').background_gradient(cmap='Blues', axis=None).to_html()}</div>")


def _overlay_html(png: bytes, caption: str, legend: dict) -> str:
    from mikata.notebook import esc, img_tag, legend_html

    return (f'<figure style="margin:0">{img_tag(png, alt=caption)}'
            f"<figcaption>{esc(caption)}{legend_html(legend)}</figcaption></figure>")


def _fmt(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))


def open_run(path: "str | os.PathLike | RunView", split: str | None = None,
             model: "ModelHandle | str | ModelSource | None" = None, device: str | None = "cpu") -> Run:
    """Open a scanned run for a notebook: ``run.summary()``, ``run.confusion()``, ``run.to_pandas()``, ...

    Raises ``RunStoreError`` when ``path`` is not a run made by ``mikata scan``.

    Example:
        >>> run = mikata.open_run("runs/a")
        >>> run.summary()["images"], len(run.class_names)
        (12, 1000)
    """
    from mikata.analysis.view import RunView

    if not isinstance(path, RunView) and not Path(path).expanduser().is_dir():
        raise RunStoreError(f"{path} is not a directory; pass a run directory made by `mikata scan`")
    return Run(path, split, model, device)
