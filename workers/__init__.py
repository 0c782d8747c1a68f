"""GPU-pinned inference workers: Celery in front, plain code behind it."""
