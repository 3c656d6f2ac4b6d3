"""keg_storage_ta: the demo Flask application of keg_storage."""
