"""yoloq: queue-driven, distributed YOLO inference. This package is the shared contract."""
