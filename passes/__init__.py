"""Graph passes: pure rewrites of an onnx-graphsurgeon graph (+ calibration statistics handed in).

Every pass is registered here by name; that name is the file name and the CLI spelling.
"""

from edgec.passes.base import Pass, PassContext, PassOptionError, PassResult
from edgec.passes.channels import ChannelsPass
from edgec.passes.cleanup import CleanupPass
from edgec.passes.embed import EmbedPass
from edgec.passes.fuse import FusePass
from edgec.passes.gates import GatesPass
from edgec.passes.heads import HeadsPass
from edgec.passes.lowrank import LowRankPass
from edgec.passes.prune import PrunePass
from edgec.passes.quantize import QuantizePass
from edgec.passes.recover import RecoverPass
from edgec.passes.share import SharePass
from edgec.passes.sparse import SparsePass
from edgec.passes.weights import WeightsPass

REGISTRY: dict[str, type[Pass]] = {
    ChannelsPass.name: ChannelsPass,
    CleanupPass.name: CleanupPass,
    EmbedPass.name: EmbedPass,
    FusePass.name: FusePass,
    GatesPass.name: GatesPass,
    HeadsPass.name: HeadsPass,
    LowRankPass.name: LowRankPass,
    PrunePass.name: PrunePass,
    QuantizePass.name: QuantizePass,
    RecoverPass.name: RecoverPass,
    SharePass.name: SharePass,
    SparsePass.name: SparsePass,
    WeightsPass.name: WeightsPass,
}


class UnknownPass(KeyError):
    pass


def get_pass(name: str) -> Pass:
    try:
        return REGISTRY[name]()
    except KeyError:
        raise UnknownPass(f"unknown pass '{name}' (known: {', '.join(sorted(REGISTRY))})") from None


__all__ = ["REGISTRY", "Pass", "PassContext", "PassOptionError", "PassResult", "UnknownPass", "get_pass"]
