"""What the seed article's users run today: one Flask process around the model.

The baseline ``bench/detect.py`` measures ``POST /v1/detect`` against, served by
gunicorn with one sync worker (requests one at a time, torch on every core):

    BENCH_WEIGHTS=tests/fixtures/shapes_yolov8n.pt BENCH_IMGSZ=320 \\
        gunicorn --workers 1 --bind 127.0.0.1:5000 bench.flask_app:app

``POST /detect`` takes a multipart ``image`` and answers the boxes as JSON.
"""

from __future__ import annotations

import os
import tempfile

os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-cfg-"))

import cv2
import numpy as np
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from ultralytics.models import YOLO

IMGSZ = int(os.environ.get("BENCH_IMGSZ", "640"))
model = YOLO(os.environ["BENCH_WEIGHTS"], task="detect")
model(np.zeros((IMGSZ, IMGSZ, 3), np.uint8), imgsz=IMGSZ, verbose=False)  # load and warm

app = Flask(__name__)


@app.post("/detect")
def detect() -> ResponseReturnValue:
    data = request.files["image"].read()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return jsonify({"error": "not an image"}), 422
    [result] = model(image, imgsz=IMGSZ, verbose=False)
    boxes = result.boxes
    return jsonify(
        [
            {"class_id": int(c), "confidence": float(p), "box": [float(v) for v in xyxy]}
            for c, p, xyxy in zip(
                boxes.cls.tolist(), boxes.conf.tolist(), boxes.xyxy.tolist(), strict=True
            )
        ]
    )
