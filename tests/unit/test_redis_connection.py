"""Parsing ``redis+sentinel://`` URLs into what redis-py and kombu each take."""

from __future__ import annotations

import pytest

from yoloq.queue import make_celery
from yoloq.redis_connection import SentinelTarget, celery_broker, sentinel_target
from yoloq.settings import Settings


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database() -> None:
    target = SentinelTarget.parse("redis+sentinel://:p%40ss@s1:26380,s2,10.0.0.3:5000/orders/2")
    assert target == SentinelTarget(
        sentinels=[("s1", 26380), ("s2", 26379), ("10.0.0.3", 5000)],
        master="orders",
        db=2,
        password="p@ss",
    )
    assert SentinelTarget.parse("redis+sentinel://s1/yoloq") == SentinelTarget(
        [("s1", 26379)], "yoloq"
    )


@pytest.mark.parametrize("url", ["redis+sentinel://s1:26379", "redis+sentinel:///yoloq"])
def test_a_sentinel_url_without_sentinels_or_master_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="redis\\+sentinel://host:port"):
        SentinelTarget.parse(url)


def test_a_plain_url_is_left_as_it_is() -> None:
    assert sentinel_target("redis://127.0.0.1:6379/0") is None
    assert celery_broker("redis://127.0.0.1:6379/0") == ("redis://127.0.0.1:6379/0", {})


def test_the_broker_asks_every_sentinel_for_the_master() -> None:
    url = "redis+sentinel://:p%40ss@s1:26379,s2:26379/yoloq/1"
    broker, options = celery_broker(url)
    assert broker == "sentinel://:p%40ss@s1:26379/1;sentinel://:p%40ss@s2:26379/1"
    assert options == {"master_name": "yoloq"}
    conf = make_celery(Settings(redis_url=url)).conf
    assert conf.broker_url == broker
    assert conf.broker_transport_options["master_name"] == "yoloq"
    assert conf.broker_transport_options["visibility_timeout"] == Settings().visibility_timeout_s
