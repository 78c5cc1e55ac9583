from ._native import SAE as SAE, __version__ as __version__
from ._native import set_bf16_screen as set_bf16_screen, bf16_screen as bf16_screen

__all__ = ["SAE", "__version__", "set_bf16_screen", "bf16_screen"]
