"""The Celery app from the environment's settings, for ``celery --app yoloq.celery_app``:
Flower (and ``celery inspect``/``events``) find the broker as yoloq's own processes do,
a single Redis or a Sentinel set alike, without a broker URL of their own."""

from yoloq.queue import make_celery
from yoloq.settings import Settings

app = make_celery(Settings())
