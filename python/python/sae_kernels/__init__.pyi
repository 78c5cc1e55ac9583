from ._native import SAE as SAE, __version__ as __version__
from ._native import set_topk_screen as set_topk_screen, topk_screen as topk_screen

__all__ = ["SAE", "__version__", "set_topk_screen", "topk_screen"]
