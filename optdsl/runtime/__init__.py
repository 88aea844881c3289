"""Loading generated optimizers: an on-disk cache of real ``.py`` files."""
