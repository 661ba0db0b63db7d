# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # mikata quickstart
#
# What a CNN looks at, and where it fails on a folder of labeled images — in a notebook.
# Everything here runs offline: the built-in EfficientNet-Lite0 has real ImageNet weights, and the
# photos come with scikit-image and scikit-learn. Open it with `jupytext --to notebook
# examples/quickstart.py` (or run it as a script).

# %%
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data
from sklearn.datasets import load_sample_image

import mikata

work = Path(tempfile.mkdtemp(prefix="mikata-quickstart-"))
photos = {"tiger cat": data.chelsea(), "espresso": data.coffee(), "missile": data.rocket(),
          "palace": load_sample_image("china.jpg"), "daisy": load_sample_image("flower.jpg")}
for name, pixels in photos.items():
    Image.fromarray(pixels).save(work / f"{name.replace(' ', '_')}.png")

# %% [markdown]
# ## 1. Load a model and classify a photo

# %%
handle = mikata.load_model("efficientnet-lite0")
for p in mikata.predict(handle, [work / "tiger_cat.png", work / "espresso.png"], top=3):
    print(Path(p.path).name, [(name, round(prob, 3)) for name, _, prob in p.top])

# %% [markdown]
# ## 2. Where does the network look?
# An `Explanation` is a list of maps (one per method and target class) that draws itself.

# %%
explanation = mikata.explain(handle, work / "tiger_cat.png", ["gradcam", "guided-gradcam", "smoothgrad"],
                             targets="top2")
explanation

# %% [markdown]
# ## 3. Scan a labeled folder
# Six crops of each photo go into a folder named by its ImageNet class; two crops are filed under the
# wrong class on purpose, as happens in real datasets.

# %%
folder = work / "photos"
rng = np.random.default_rng(0)
planted = []
for k, (name, pixels) in enumerate(photos.items()):
    img = Image.fromarray(pixels)
    for i in range(6):
        w, h = img.size
        s = rng.uniform(0.75, 0.95)
        x0, y0 = rng.uniform(0, 1 - s) * w, rng.uniform(0, 1 - s) * h
        crop = img.crop((int(x0), int(y0), int(x0 + s * w), int(y0 + s * h)))
        label = name
        if i == 0 and name in ("espresso", "daisy"):  # a planted label error
            label = "daisy" if name == "espresso" else "espresso"
            planted.append(f"{name}_{i}.png")
        (folder / label).mkdir(parents=True, exist_ok=True)
        crop.save(folder / label / f"{name.replace(' ', '_')}_{i}.png")

summary = mikata.scan(handle, folder, work / "run", batch_size=16, workers=0, progress=False)
print(f"scanned {summary.computed} images, skipped {summary.skipped}")

# %% [markdown]
# ## 4. Open the run: accuracy, confusion, suspected label errors
# The same numbers as `mikata audit`, `mikata report` and `mikata serve`.

# %%
run = mikata.open_run(work / "run")
run

# %%
issues = run.label_issues()
issues[["path", "label", "suggested", "label_prob", "suggested_prob"]]

# %%
found = {Path(p).name for p in issues["path"]}
print("planted label errors found:", sorted(set(planted) & found), "of", sorted(planted))

# %% [markdown]
# ## 5. One table for pandas, and a map for any image and any class

# %%
df = run.to_pandas()
df[["path", "label", "predicted", "label_prob", "margin", "label_quality", "label_issue"]].head()

# %%
first = int(issues["id"].iloc[0]) if len(issues) else int(df["id"].iloc[0])
run.overlay(first, "gradcam")
