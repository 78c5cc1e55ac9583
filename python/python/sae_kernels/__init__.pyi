from ._native import SAE as SAE, __version__ as __version__

__all__ = ["SAE", "__version__"]
