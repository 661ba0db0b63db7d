"""How the report and the app read an atlas (``concepts.surface``): shaping, checks on damaged numbers,
the location heat, crop boxes and the decomposition sentence — on hand-made atlases with known answers."""

from __future__ import annotations

import pytest

from mikata.concepts.surface import (
    concept_index,
    crop_box,
    decomposition_text,
    find_concept,
    shape_atlas,
)


def _atlas() -> dict:
    def concept(name, imp, shortcut=False):
        return {"concept": name, "importance": imp, "presence": 0.5, "exemplars": [{"id": 3, "path": "/x", "box": [1, 2, 9, 8.6]}],
                "location": {"center": [0.25, 0.75], "spread": 0.1}, "area": 0.2,
                "deletion": {"flip_rate": 0.5, "mean_drop": 0.3, "images": 10}, "shortcut": shortcut, "evidence": "e"}
    return {"layer": "blocks.4",
            "classes": {"Coat": [concept("Coat/0", 0.2), concept("Coat/1", 0.7, True), concept("Coat/2", float("nan"))],
                        "Ghost": [concept("Ghost/0", 1.0)]},
            "strategies": {"Coat": [{"strategy": 0, "size": 12, "accuracy": 0.5, "exemplars": [3, True, "7"],
                                     "concepts": {"Coat/1": 0.2, "Coat/0": 0.8}, "clever_hans": True}]},
            "errors": {"per_class": {"Coat": [{"concept": "Coat/1", "with": {"images": 40, "accuracy": 0.9},
                                               "without": {"images": 20, "accuracy": 0.4}, "over_present": True}]},
                       "pairs": [{"true": "Coat", "pred": "Shirt", "errors": 7,
                                  "concepts": [{"concept": "Coat/1", "in_errors": 0.8, "in_correct": 0.3, "over_present": True}]},
                                 {"true": "Coat", "pred": "Nope", "errors": 1, "concepts": []}]},
            "slices": [{"class": "Coat", "concept": "Coat/1", "present": False, "images": 20, "accuracy": 0.4},
                       {"class": "Ghost", "concept": "Ghost/0", "present": True, "images": 3, "accuracy": 0.0}]}


def test_classes_in_run_order_concepts_by_importance_with_their_error_numbers():
    view = shape_atlas(_atlas(), ["Shirt", "Coat"])
    assert [c["name"] for c in view["classes"]] == ["Coat"]  # "Ghost" is not a class of this run
    coat = view["classes"][0]
    assert coat["index"] == 1
    assert [c["concept"] for c in coat["concepts"]] == ["Coat/1", "Coat/0", "Coat/2"]
    assert coat["concepts"][2]["importance"] == 0.0  # NaN never reaches a page
    c1 = find_concept(view, 1, 1)[1]
    assert c1["with"] == {"images": 40, "accuracy": 0.9} and c1["without"] == {"images": 20, "accuracy": 0.4}
    assert find_concept(view, 1, 0)[1]["with"] is None
    assert c1["exemplars"] == [{"id": 3, "box": [1, 2, 9, 9]}]  # the path is dropped: files are reached by id
    assert [s["concept"] for s in view["shortcuts"]] == ["Coat/1"] and view["shortcuts"][0]["ci"] == 1
    assert [s["concept"] for s in view["slices"]] == ["Coat/1"]
    assert coat["strategies"][0]["exemplars"] == [3]  # True and "7" are not ids
    assert coat["strategies"][0]["concepts"] == [("Coat/0", 0.8), ("Coat/1", 0.2)]
    assert coat["strategies"][0]["clever_hans"] is True
    assert [(p["true"], p["pred"], p["ti"], p["pi"], p["errors"]) for p in view["pairs"]] == [("Coat", "Shirt", 1, 0, 7)]
    assert view["pairs"][0]["concepts"] == [{"concept": "Coat/1", "k": 1, "in_errors": 0.8, "in_correct": 0.3,
                                             "over_present": True}]
    assert c1["over_present"] is True and find_concept(view, 1, 0)[1]["over_present"] is False
    with pytest.raises(KeyError):
        find_concept(view, 0, 0)
    with pytest.raises(KeyError):
        find_concept(view, 1, 9)


def test_damaged_fields_show_blanks_not_errors():
    bad = {"layer": 3, "classes": {"Coat": [{"concept": "Coat/0", "importance": "big", "exemplars": [{"id": "1"}],
                                             "location": {"center": [0.5]}, "deletion": "no"}, "junk"]},
           "strategies": [], "errors": None, "slices": {"x": 1}}
    view = shape_atlas(bad, ["Coat"])
    c = view["classes"][0]["concepts"]
    assert len(c) == 1 and c[0]["importance"] == 0.0 and c[0]["exemplars"] == [] and c[0]["center"] is None
    assert c[0]["deletion"] is None and view["slices"] == [] and view["classes"][0]["strategies"] == []


def test_concept_numbers_and_the_decomposition_sentence():
    assert concept_index("Coat/2", 0) == 2 and concept_index("a/b/11", 0) == 11 and concept_index("odd", 4) == 4
    shares = [("Coat/0", 0.24), ("Coat/2", 0.61), ("Coat/1", 0.1), ("Coat/3", 0.05)]
    assert decomposition_text("Coat", shares, top=2) == "Coat: 61% concept 2, 24% concept 0, …"
    assert decomposition_text("Coat", shares[:2]) == "Coat: 61% concept 2, 24% concept 0"


def test_crop_boxes_stay_inside_the_image_and_are_never_empty():
    assert crop_box((28, 28, 3), [2, 3, 20, 24]) == (2, 3, 20, 24)
    assert crop_box((28, 30, 3), [-5, -5, 99, 99]) == (0, 0, 30, 28)
    assert crop_box((28, 28, 3), [10, 10, 10, 5]) == (10, 10, 11, 11)


def test_user_defined_concepts_keep_their_test_results():
    doc = {"layer": "x", "classes": {}, "tcav": {"stripes": {"classes": {
        "Coat": {"score": 0.8, "random_mean": 0.5, "p_value": 0.001, "significant": True, "images": 30},
        "Ghost": {"score": 0.1}}}}}
    view = shape_atlas(doc, ["Coat"])
    assert view["tcav"] == [{"concept": "stripes", "classes": [{"class": "Coat", "score": 0.8, "random": 0.5,
                                                                "p_value": 0.001, "significant": True, "images": 30}]}]
