import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper as h

from edgec.runtime.inputs import concrete_shape, input_specs, synthesize_feed


def _session():
    """A model with token ids, a mask, token types and an image input."""
    inputs = [h.make_tensor_value_info("input_ids", T.INT64, ["batch", "sequence"]),
              h.make_tensor_value_info("attention_mask", T.INT64, ["batch", "sequence"]),
              h.make_tensor_value_info("token_type_ids", T.INT64, ["batch", "sequence"]),
              h.make_tensor_value_info("pixel_values", T.FLOAT, ["batch", 3, "height", "width"])]
    nodes = [h.make_node("Identity", [i.name], [i.name + "_out"]) for i in inputs]
    outputs = [h.make_tensor_value_info(n.output[0], i.type.tensor_type.elem_type, None) for n, i in zip(nodes, inputs, strict=True)]
    model = h.make_model(h.make_graph(nodes, "g", inputs, outputs), opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_feeds_respect_roles_and_dtypes():
    specs = input_specs(_session())
    feed = synthesize_feed(specs, np.random.default_rng(0), vocab_size=50)
    assert feed["input_ids"].dtype == np.int64 and feed["input_ids"].shape == (1, 128)
    assert 0 <= feed["input_ids"].min() and feed["input_ids"].max() < 50
    assert (feed["attention_mask"] == 1).all() and (feed["token_type_ids"] == 0).all()
    img = feed["pixel_values"]
    assert img.shape == (1, 3, 224, 224) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1


def test_named_dims_override_guesses():
    specs = {s.name: s for s in input_specs(_session())}
    assert concrete_shape(specs["input_ids"], {"sequence": 16, "batch": 2}) == (2, 16)
    assert concrete_shape(specs["pixel_values"], {"height": 32, "width": 48}) == (1, 3, 32, 48)


def test_same_seed_same_feed():
    specs = input_specs(_session())
    a = synthesize_feed(specs, np.random.default_rng(3))
    b = synthesize_feed(specs, np.random.default_rng(3))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert isinstance(onnx.__version__, str)


def test_a_free_length_float_vector_is_a_waveform_of_one_second():
    from edgec.runtime.inputs import InputSpec

    audio = InputSpec("input_values", np.dtype(np.float32), ("batch_size", "sequence_length"))
    assert concrete_shape(audio) == (1, 16000)
    assert concrete_shape(audio, {"samples": 8000}) == (1, 8000)
    assert concrete_shape(audio, {"sequence_length": 400}) == (1, 400)
    tokens = InputSpec("input_ids", np.dtype(np.int64), ("batch_size", "sequence_length"))
    assert concrete_shape(tokens) == (1, 128)


def test_a_channels_last_image_gets_square_spatial_dims():
    from edgec.runtime.inputs import InputSpec

    nhwc = InputSpec("image", np.dtype(np.float32), ("N", "H", "W", 3))
    assert concrete_shape(nhwc) == (1, 224, 224, 3)
    assert concrete_shape(nhwc, {"spatial": 96}) == (1, 96, 96, 3)


def test_inputs_that_share_a_dimension_name_get_the_same_size():
    from edgec.runtime.inputs import InputSpec, synthesize_feed

    specs = [InputSpec("edge_feat", np.dtype(np.float32), ("num_edges", 13)),
             InputSpec("edge_index", np.dtype(np.int64), (2, "num_edges")),
             InputSpec("h", np.dtype(np.float32), ("?", 3, "?", "?"))]
    feed = synthesize_feed(specs, np.random.default_rng(0))
    assert feed["edge_feat"].shape[0] == feed["edge_index"].shape[1]


def test_the_free_middle_of_a_recurrent_state_is_its_batch():
    from edgec.runtime.inputs import InputSpec, concrete_shape

    assert concrete_shape(InputSpec("state", np.dtype(np.float32), (2, None, 128))) == (2, 1, 128)


def test_a_scalar_input_stays_a_scalar():
    from edgec.runtime.inputs import InputSpec, synthesize_feed

    feed = synthesize_feed([InputSpec("sr", np.dtype(np.int64), ())], np.random.default_rng(0), fixed={"sr": 16000})
    assert feed["sr"].shape == () and int(feed["sr"]) == 16000


def test_a_key_equal_to_an_input_name_is_that_input_even_with_a_slash():
    from edgec.runtime.inputs import is_itemized, items

    stacked = {"gpu_0/data_0": np.zeros((4, 3, 8, 8), np.float32)}
    assert not is_itemized(stacked, ["gpu_0/data_0"])
    itemized = {"0/gpu_0/data_0": np.zeros((1, 3, 8, 8)), "1/gpu_0/data_0": np.ones((1, 3, 8, 8))}
    assert is_itemized(itemized, ["gpu_0/data_0"])
    assert [(item, sorted(arrays)) for item, arrays in items(itemized)] == [("0", ["gpu_0/data_0"]),
                                                                           ("1", ["gpu_0/data_0"])]


def test_an_itemized_key_starts_with_an_integer_item():
    from edgec.runtime.inputs import is_itemized

    assert is_itemized({"0/x": np.zeros(2), "10/x": np.zeros(2)})
    assert not is_itemized({"first/x": np.zeros(2)})
