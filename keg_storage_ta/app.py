"""The app factory of the demo (``flask --app keg_storage_ta run`` finds ``create_app``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from .config import DefaultConfig, instance_secret_key, local_profiles
from .extensions import storage
from .views import demo


def create_app(
    test_config: Mapping[str, Any] | None = None, instance_path: str | None = None
) -> Flask:
    """The demo app: ``test_config`` replaces the instance's ``config.py``; ``instance_path``
    moves the instance folder (where the secret key and the LocalFS store live)."""
    app = Flask("keg_storage_ta", instance_relative_config=True, instance_path=instance_path)
    app.config.from_object(DefaultConfig)
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
    else:
        app.config.update(test_config)
    os.makedirs(app.instance_path, exist_ok=True)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret_key(app.instance_path)
    if not app.config.get("KEG_STORAGE_PROFILES"):
        app.config["KEG_STORAGE_PROFILES"] = local_profiles(
            app.instance_path, app.config["SECRET_KEY"]
        )
    storage.init_app(app)
    app.register_blueprint(demo)
    return app
