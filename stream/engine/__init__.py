"""The recommender engine: pure Python + numpy + River, no Faust.

>>> from stream.engine import Engine, EngineConfig
>>> Engine(EngineConfig(seed=0)).known_user("nobody")
False
"""

from stream.engine.config import EngineConfig
from stream.engine.engine import Engine

__all__ = ["Engine", "EngineConfig"]
