"""The extension objects of the demo app, shared by the app factory and the views."""

from keg_storage import Storage

storage = Storage()
