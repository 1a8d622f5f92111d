"""The package version (its own module: the package init and the compiler both read it)."""

__version__ = "0.1.0"
