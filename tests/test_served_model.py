"""The run's MLflow ``model`` (issue 22): raw inputs in, labels with probabilities (or values
in the target's units) out, in a fresh process and behind ``mlflow models serve``, from what
the model packages alone, with the same answers as ``python -m pipelines.predict``.

One text run, one image run and one table run are trained once for the module, through the
Python API (``pipelines.train``). The CLI's
predictions are taken first; then the training file and the runs' own artifacts (config,
checkpoints, data files) are deleted, so what answers afterwards is the logged model alone.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import FAST, mlflow_runs, run_cli, store_uri

CUES = {"pos": ["good", "great", "superb", "lovely"], "neg": ["bad", "awful", "poor", "dull"]}
FILLERS = ["phone", "battery", "screen", "case", "charger", "the", "was", "really"]
#: what the text model is asked about (never in its training file)
TEXTS = [
    "The battery was really good",
    "An awful screen, poor case",
    "the charger",
    "Lovely phone. Superb!",
]
#: rows of the bundled diabetes table the table model is asked about
TABLE_ROWS = [0, 5, 17]


@dataclass
class Runs:
    workdir: Path
    uri: str
    text: str
    image: str
    table: str
    #: the CLI's predictions by case: rows of ``file,prediction,probability`` (or ``row``)
    cli: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    broken_image: str = ""
    table_columns: dict[str, list[float]] = field(default_factory=dict)


def write_reviews(path: Path, count: int) -> None:
    """``count`` short reviews of two classes, a cue word giving each label away."""
    rng = random.Random(0)
    rows = []
    for index in range(count):
        label = ("pos", "neg")[index % 2]
        words = [*rng.choices(FILLERS, k=5), rng.choice(CUES[label])]
        rng.shuffle(words)
        rows.append([" ".join(words), label])
    with path.open("w", encoding="utf-8", newline="") as stream:
        csv.writer(stream).writerows([["text", "label"], *rows])


def write_digits(folder: Path, count: int) -> list[str]:
    """PNGs of the first ``count`` bundled 8x8 digits."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    images = load_digits().images
    paths = []
    for index in range(count):
        pixels = (images[index] * 16).clip(0, 255).astype(np.uint8)
        path = folder / f"digit{index}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


def cli_predict(runs: Runs, run_id: str, files: list[str]) -> list[dict[str, str]]:
    result = run_cli([run_id, *files], runs.workdir, module="pipelines.predict")
    assert result.returncode == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    from mlflow import MlflowClient

    workdir = tmp_path_factory.mktemp("served")
    write_reviews(workdir / "reviews.csv", 200)
    trained = [
        ["data=text_classification", "data.path=reviews.csv", "model=bow_dense", *FAST],
        ["model=mlp", *FAST],
        ["data=housing", "model=regressor", *FAST],
    ]
    import pipelines

    here = Path.cwd()
    os.chdir(workdir)  # as a notebook started in that folder: its outputs/ and mlruns/
    try:
        for args in trained:  # through the Python API, as issue 22 asks
            pipelines.train(*args, tracking_uri=store_uri(workdir), progress=False)
    finally:
        os.chdir(here)
    uri = store_uri(workdir)
    text, image, table = (run.info.run_id for run in mlflow_runs(uri))
    runs = Runs(workdir, uri, text, image, table)
    # the inputs, and what the CLI predicts for them
    inputs = workdir / "inputs"
    inputs.mkdir()
    text_files = []
    for index, review in enumerate(TEXTS):
        (inputs / f"review{index}.txt").write_text(review, encoding="utf-8")
        text_files.append(str(inputs / f"review{index}.txt"))
    runs.cli["text"] = cli_predict(runs, text, text_files)
    runs.images = write_digits(inputs, 4)
    runs.cli["image"] = cli_predict(runs, image, runs.images)
    runs.broken_image = str(inputs / "broken.png")
    Path(runs.broken_image).write_text("not a picture", encoding="utf-8")
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).data.iloc[TABLE_ROWS]
    frame.to_csv(inputs / "patients.csv", index=False)
    runs.table_columns = {name: frame[name].tolist() for name in frame.columns}
    runs.cli["table"] = cli_predict(runs, table, [str(inputs / "patients.csv")])
    # from here on, only the logged models know the runs
    (workdir / "reviews.csv").unlink()
    client = MlflowClient(uri)
    for run_id in (text, image, table):
        folder = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
        assert (folder / "config.yaml").is_file(), folder
        shutil.rmtree(folder)
    return runs


#: run in a fresh interpreter: each case's model loaded with mlflow.pyfunc.load_model and
#: given raw inputs, in Python (``predict``) or as the scoring server parses a JSON request
FRESH = r"""
import json, sys
import mlflow, pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.scoring_server import invocations
from pipelines.errors import PipelineError

models, out = {}, {}
for case in json.loads(sys.argv[1]):
    uri = f"runs:/{case['run']}/model"
    if uri not in models:
        models[uri] = mlflow.pyfunc.load_model(uri)
    model, given = models[uri], case["input"]
    if "http" in given:
        schema = model.metadata.get_input_schema()
        try:
            answer = invocations(json.dumps(given["http"]), "application/json", model, schema)
            out[case["id"]] = {"status": answer.status, "body": json.loads(answer.response)}
        except MlflowException as exc:
            body = json.loads(exc.serialize_as_json())
            out[case["id"]] = {"status": exc.get_http_status_code(), "body": body}
        continue
    if "frame" in given:
        data = pd.DataFrame(given["frame"])
    elif "bytes_of" in given:
        data = [open(path, "rb").read() for path in given["bytes_of"]]
    else:
        data = given["list"]
    try:
        out[case["id"]] = {"rows": model.predict(data).to_dict("records")}
    except Exception as exc:
        out[case["id"]] = {
            "error": type(exc).__name__,
            "message": str(exc),
            "pipeline_error": isinstance(exc, PipelineError),
        }
print("RESULT " + json.dumps(out))
"""


def fresh_env(runs: Runs) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = runs.uri
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def fresh(runs: Runs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case's answer from one fresh interpreter, in a folder with no runs or data."""
    missing_bmi = {k: v for k, v in runs.table_columns.items() if k != "bmi"}
    columns = list(runs.table_columns)
    table_rows = [list(row) for row in zip(*runs.table_columns.values(), strict=True)]
    table_split = {"columns": columns, "data": table_rows}
    table_records = [dict(zip(columns, row, strict=True)) for row in table_rows]
    cases = {
        "text_list": (runs.text, {"list": TEXTS}),
        "text_frame": (runs.text, {"frame": {"text": TEXTS}}),
        "image_paths": (runs.image, {"list": runs.images}),
        "image_frame": (runs.image, {"frame": {"path": runs.images}}),
        "image_bytes": (runs.image, {"bytes_of": runs.images}),
        "image_given_text": (runs.image, {"list": ["A great phone, really."]}),
        "image_broken": (runs.image, {"list": [runs.broken_image]}),
        "table_frame": (runs.table, {"frame": runs.table_columns}),
        "table_missing": (runs.table, {"frame": missing_bmi}),
        # what the scoring server hands the model for JSON requests
        "http_image_inputs": (runs.image, {"http": {"inputs": runs.images}}),
        "http_image_columns": (runs.image, {"http": {"inputs": {"path": runs.images}}}),
        "http_image_text": (runs.image, {"http": {"inputs": ["A great phone, really."]}}),
        "http_table_split": (runs.table, {"http": {"dataframe_split": table_split}}),
        "http_table_records": (runs.table, {"http": {"inputs": table_records}}),
        "http_table_missing": (
            runs.table,
            {"http": {"dataframe_split": {"columns": ["age"], "data": [[0.01]]}}},
        ),
    }
    spec = [{"id": key, "run": run, "input": given} for key, (run, given) in cases.items()]
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    proc = subprocess.run(
        [sys.executable, "-c", FRESH, json.dumps(spec)],
        cwd=elsewhere,
        env=fresh_env(runs),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    assert not list(elsewhere.iterdir()), "loading a model left nothing behind"
    return json.loads(lines[-1].removeprefix("RESULT "))


def same_rows(given: list[dict[str, Any]], cli: list[dict[str, str]]) -> None:
    """The model's rows are the CLI's (less its ``file``/``row``): the same labels, and
    the same probabilities or values to float32 precision."""
    assert len(given) == len(cli)
    for row, expected in zip(given, cli, strict=True):
        if "probability" in expected:
            assert str(row["prediction"]) == expected["prediction"]
            assert row["probability"] == pytest.approx(float(expected["probability"]), abs=1e-6)
        else:
            value = float(expected["prediction"])
            assert row["prediction"] == pytest.approx(value, rel=1e-6, abs=1e-6)


def test_a_text_model_predicts_texts_as_the_cli_predicts_files(runs, fresh) -> None:
    same_rows(fresh["text_list"]["rows"], runs.cli["text"])
    same_rows(fresh["text_frame"]["rows"], runs.cli["text"])
    assert set(fresh["text_list"]["rows"][0]) == {"prediction", "probability"}


def test_an_image_model_predicts_paths_and_bytes_as_the_cli(runs, fresh) -> None:
    for case in ("image_paths", "image_frame", "image_bytes", "http_image_inputs"):
        rows = fresh[case]["rows"] if "rows" in fresh[case] else fresh[case]["body"]["predictions"]
        same_rows(rows, runs.cli["image"])
    assert fresh["http_image_columns"]["status"] == 200
    same_rows(fresh["http_image_columns"]["body"]["predictions"], runs.cli["image"])
    assert {row["prediction"] for row in fresh["image_paths"]["rows"]} <= set("0123456789")


def test_a_table_model_predicts_rows_in_the_targets_units(runs, fresh) -> None:
    same_rows(fresh["table_frame"]["rows"], runs.cli["table"])
    for case in ("http_table_split", "http_table_records"):
        assert fresh[case]["status"] == 200, fresh[case]
        same_rows(fresh[case]["body"]["predictions"], runs.cli["table"])
    assert set(fresh["table_frame"]["rows"][0]) == {"prediction"}


def test_bad_inputs_are_one_clear_message(fresh) -> None:
    """A string to an image model, an image that cannot be decoded, a table missing a
    training column: one paragraph, a PipelineError in Python, HTTP 400 served."""
    expected = {
        "image_given_text": "is not an image file",
        "image_broken": "cannot be decoded as an image",
        "table_missing": "no column(s) 'bmi'",
    }
    for case, words in expected.items():
        answer = fresh[case]
        assert answer.get("pipeline_error") is True, answer
        assert words in answer["message"] and "\n" not in answer["message"], answer
        assert "Traceback" not in answer["message"]
    for case, words in (
        ("http_image_text", "is not an image file"),
        ("http_table_missing", "lacks feature columns"),
    ):
        answer = fresh[case]
        assert answer["status"] == 400, answer
        assert words in answer["body"]["message"], answer
        assert answer["body"]["error_code"] == "INVALID_PARAMETER_VALUE"


def free_port() -> int | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    except OSError:
        return None


def post(port: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_served_model_answers_as_the_cli(runs, tmp_path: Path) -> None:
    """``mlflow models serve`` on the text run's model: JSON texts in, the CLI's answers
    out; a request without texts is HTTP 400 saying what the model takes."""
    port = free_port()
    if port is None:
        pytest.skip("no port can be bound on 127.0.0.1")
    log = (tmp_path / "serve.log").open("w")
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [str(mlflow_cli), "models", "serve", "-m", f"runs:/{runs.text}/model",
         "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"],
        cwd=tmp_path, env=fresh_env(runs), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(1)
        status, body = post(port, {"inputs": TEXTS})
        assert status == 200, body
        same_rows(body["predictions"], runs.cli["text"])
        split = {"dataframe_split": {"columns": ["text"], "data": [[text] for text in TEXTS]}}
        status, body = post(port, split)
        assert status == 200, body
        same_rows(body["predictions"], runs.cli["text"])
        status, body = post(port, {"dataframe_split": {"columns": ["review"], "data": [["x"]]}})
        assert status == 400 and "'text' column" in body["message"], body
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_the_model_is_a_pyfunc_model_and_the_network_stays(runs) -> None:
    """``model`` is the pyfunc model (code and packaged artifacts, no run record needed);
    ``network`` is the network alone, tensors in and out."""
    import mlflow
    import torch

    mlflow.set_tracking_uri(runs.uri)
    info = mlflow.models.get_model_info(f"runs:/{runs.image}/model")
    assert set(info.flavors) == {"python_function"}
    packaged = info.flavors["python_function"]["artifacts"]
    assert {"config", "checkpoint"} <= set(packaged)
    text_info = mlflow.models.get_model_info(f"runs:/{runs.text}/model")
    assert "data/tokenizer.json" in text_info.flavors["python_function"]["artifacts"]
    network = mlflow.pytorch.load_model(f"runs:/{runs.image}/network")
    assert network(torch.rand(3, 1, 8, 8)).shape == (3, 10)
