"""The task of the Redis peers (RQ and Celery workers import it): `square`, as in the pool rows.

The Celery app reads its broker (also its result backend) and queue from the environment the
driver (`redis_peers.py`) gives its workers: BENCH_REDIS_URL, BENCH_QUEUE.
"""
import os


def square(x):
    return x * x


try:
    from celery import Celery
except ImportError:  # RQ and the redis-py loop do not need it
    app = None
else:
    _url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    app = Celery("redis_tasks", broker=_url, backend=_url)
    app.conf.update(
        task_default_queue=os.environ.get("BENCH_QUEUE", "bench"),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        result_expires=600,
    )
    celery_square = app.task(name="redis_tasks.square")(square)
