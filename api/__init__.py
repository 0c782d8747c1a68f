"""The HTTP API. Imports ``yoloq`` only: never torch, Ultralytics, OpenCV or ``workers``."""
