"""keg_storage_ta: the demo Flask application of keg_storage.

``flask --app keg_storage_ta run`` serves it on a LocalFS store in the app's instance folder.
"""

from .app import create_app

__all__ = ["create_app"]
