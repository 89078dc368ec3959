"""A local stand-in of the package an evaluation-API competition ships."""
