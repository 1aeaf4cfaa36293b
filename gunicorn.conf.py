"""gunicorn settings for the dashboard (``gunicorn app:server -c gunicorn.conf.py``; see Procfile).

The app is imported once in the master (``preload_app``) and each worker loads the lake's query
encoder right after it starts, before it takes requests, so no visitor waits for a model load.
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8050')}"
workers = 2
threads = 4
timeout = 120
preload_app = True


def post_worker_init(worker) -> None:
    """Ready this worker (services.prepare_worker): torch threads, the lake and its query encoder, the
    pages' default views (torch must not be loaded before fork)."""
    from services import EXTENSION, prepare_worker

    prepare_worker(worker.wsgi.extensions[EXTENSION])
