# nbray.util's public surface, listed once: __init__.py reads this file to import each name on
# first use (nbray._base.lazy), type checkers read it as the stub.
# One ``from MODULE import NAME as PUBLIC_NAME`` per line (no grouping: __init__ parses it).

from ..experimental.tqdm_ray import tqdm as tqdm
from . import actor_pool as actor_pool
from . import check_serialize as check_serialize
from . import joblib as joblib
from . import multiprocessing as multiprocessing
from . import queue as queue
from . import scheduling_strategies as scheduling_strategies
from .actor_pool import ActorPool as ActorPool
from .check_serialize import FailureTuple as FailureTuple
from .check_serialize import inspect_serializability as inspect_serializability
from .placement_group import PlacementGroup as PlacementGroup
from .placement_group import get_current_placement_group as get_current_placement_group
from .placement_group import get_placement_group as get_placement_group
from .placement_group import placement_group as placement_group
from .placement_group import placement_group_table as placement_group_table
from .placement_group import remove_placement_group as remove_placement_group

__all__: list[str]
