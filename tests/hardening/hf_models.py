"""Small random-weight Hugging Face architectures (vision, speech, text, OCR-style encoders) for `edgec export`.

Each factory returns a module with the attributes `edgec export` reads. `fixed` ones declare no dynamic
axis, so the exported model has a fixed batch of 1, as many exports in the wild do."""

import torch
import transformers as T


class Encoder(torch.nn.Module):
    def __init__(self, model, example: tuple, input_names: list[str], fixed: bool = False):
        super().__init__()
        self.model = model.eval()
        self._example = example
        self.input_names = input_names
        self.output_names = ["last_hidden_state"]
        self.dynamic_axes = {n: {} for n in input_names} if fixed else {n: {0: "batch"} for n in input_names}

    def forward(self, *inputs):
        return self.model(*inputs, return_dict=True).last_hidden_state

    def example_inputs(self):
        return self._example


def _seeded(build):
    def factory():
        torch.manual_seed(0)
        return build()
    factory.__name__ = build.__name__
    return factory


SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256}


@_seeded
def vit():
    model = T.ViTModel(T.ViTConfig(**SMALL, image_size=32, patch_size=8))
    return Encoder(model, (torch.randn(1, 3, 32, 32),), ["pixel_values"], fixed=True)


@_seeded
def whisper_encoder():
    config = T.WhisperConfig(d_model=64, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
                             decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256, num_mel_bins=16,
                             max_source_positions=50)
    return Encoder(T.WhisperModel(config).encoder, (torch.randn(1, 16, 100),), ["input_features"], fixed=True)


@_seeded
def wav2vec2():
    config = T.Wav2Vec2Config(**SMALL, conv_dim=(32, 32), conv_stride=(5, 2), conv_kernel=(10, 3),
                              num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    return Encoder(T.Wav2Vec2Model(config), (torch.randn(1, 4000),), ["input_values"])


@_seeded
def clip_text():
    config = T.CLIPTextConfig(**SMALL, vocab_size=1000, max_position_embeddings=32)
    return Encoder(T.CLIPTextModel(config), (torch.randint(0, 1000, (1, 16)),), ["input_ids"])


@_seeded
def t5_gated():
    config = T.T5Config(d_model=64, d_ff=256, num_layers=2, num_heads=4, d_kv=16, vocab_size=1000,
                        feed_forward_proj="gated-gelu")
    return Encoder(T.T5EncoderModel(config), (torch.randint(0, 1000, (1, 16)),), ["input_ids"], fixed=True)


@_seeded
def llama():
    config = T.LlamaConfig(**SMALL, num_key_value_heads=2, vocab_size=1000, max_position_embeddings=64,
                           use_cache=False)
    return Encoder(T.LlamaModel(config), (torch.randint(0, 1000, (2, 16)),), ["input_ids"])


@_seeded
def deit():
    model = T.DeiTModel(T.DeiTConfig(**SMALL, image_size=32, patch_size=8))
    return Encoder(model, (torch.randn(2, 3, 32, 32),), ["pixel_values"])
