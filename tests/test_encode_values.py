"""Raw inputs as a person holds them (texts, image paths or bytes, table rows), encoded by
the data plugins exactly as their files are, and refused in one paragraph otherwise."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.errors import ConfigValueError
from plugins.data.tabular import TabularRegressionDataModule
from plugins.data.vision import DigitsDataModule


def digit_png(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray((pixels * 255 / 16).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    module = DigitsDataModule(seed=0)
    module.setup("fit")
    return module


def test_image_paths_bytes_and_a_path_column_encode_as_the_files_do(
    digits: DigitsDataModule, tmp_path: Path
) -> None:
    from sklearn.datasets import load_digits

    images = load_digits().images[:3]
    paths = [digit_png(tmp_path / f"{i}.png", image) for i, image in enumerate(images)]
    from_files = digits.encode_inputs(paths)
    assert from_files.shape == (3, 1, 8, 8)
    assert torch.equal(digits.encode_values([str(p) for p in paths]), from_files)
    assert torch.equal(digits.encode_values([p.read_bytes() for p in paths]), from_files)
    frame = pd.DataFrame({"path": [str(p) for p in paths]})
    assert torch.equal(digits.encode_values(frame), from_files)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["a great movie"], "is not an image file"),
        ([b"not an image"], "cannot be decoded as an image"),
        ([3.5], "image file paths or bytes, got float"),
        (pd.DataFrame({"text": ["x"]}), "'path' column"),
    ],
    ids=["text", "bad-bytes", "number", "no-path-column"],
)
def test_what_an_image_run_cannot_read_is_one_paragraph(
    digits: DigitsDataModule, given: object, message: str
) -> None:
    with pytest.raises(ConfigValueError, match=message):
        digits.encode_values(given)


def _housing(tmp_path: Path) -> TabularRegressionDataModule:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, 3)), columns=["rooms", "age", "price"])
    frame.to_csv(tmp_path / "houses.csv", index=False)
    module = TabularRegressionDataModule(path=str(tmp_path / "houses.csv"), target="price")
    module.setup("fit")
    return module


def test_table_rows_encode_as_a_csv_of_them_does(tmp_path: Path) -> None:
    module = _housing(tmp_path)
    rows = pd.DataFrame({"age": [1.0, 2.0], "rooms": [3.0, 4.0], "note": ["a", "b"]})
    rows[["rooms", "age"]].to_csv(tmp_path / "new.csv", index=False)
    from_file = module.encode_inputs([tmp_path / "new.csv"])
    assert torch.allclose(module.encode_values(rows), from_file)
    assert torch.allclose(module.encode_values(rows.to_dict("records")), from_file)


def test_a_table_missing_a_training_column_is_named(tmp_path: Path) -> None:
    module = _housing(tmp_path)
    with pytest.raises(ConfigValueError) as err:
        module.encode_values(pd.DataFrame({"rooms": [3.0]}))
    message = str(err.value)
    assert "'age'" in message and "'rooms', 'age'" in message
    with pytest.raises(ConfigValueError, match="not str"):
        module.encode_values("rooms=3")


def test_texts_must_be_strings() -> None:
    from plugins.data.text import text_values

    assert text_values(["good", "bad"]) == ["good", "bad"]
    assert text_values("just one") == ["just one"]
    assert text_values(pd.DataFrame({"text": ["a", "b"], "id": [1, 2]})) == ["a", "b"]
    with pytest.raises(ConfigValueError, match="'text' column"):
        text_values(pd.DataFrame({"review": ["a"]}))
    with pytest.raises(ConfigValueError, match="got bytes"):
        text_values([io.BytesIO(b"x").getvalue()])
