from edgec.runtime.placement import count_providers, first_provider_share, node_placement
from edgec.runtime.session import SessionConfig

import models


def test_profile_events_are_counted_per_node():
    events = [{"cat": "Session", "name": "model_run"},
              {"cat": "Node", "name": "a_kernel_time", "args": {"provider": "CPUExecutionProvider"}},
              {"cat": "Node", "name": "a_fence_before", "args": {"provider": "CPUExecutionProvider"}},
              {"cat": "Node", "name": "b_kernel_time", "args": {"provider": "XnnpackExecutionProvider"}},
              {"cat": "Node", "name": "c_kernel_time", "args": {"provider": "XnnpackExecutionProvider"}}]
    placement = count_providers(events)
    assert placement == {"XnnpackExecutionProvider": 2, "CPUExecutionProvider": 1}
    assert first_provider_share(placement, "XnnpackExecutionProvider") == 2 / 3


def test_real_profile_places_every_node_on_cpu():
    model = models.mlp_model("relu")
    placement = node_placement(model.SerializeToString(), SessionConfig(), models.feeds(model)[0])
    assert list(placement) == ["CPUExecutionProvider"] and placement["CPUExecutionProvider"] >= 4
