"""The SDP metrics' plumbing with tiny random-weight networks built from config (no weights needed):
image preparation, normalisation constants, the official aggregation order on hand-made embeddings
with a known answer, the metric records through the registry; the weights cases skip when unstaged."""
from pathlib import Path

import numpy as np
import pytest
import torch

from unidad.metrics import dino as dino_metric
from unidad.metrics import sdp_common as sdp
from unidad.metrics.inputs import MetricInputs
from unidad.metrics.registry import get_metric

TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
            "patch_size": 16, "image_size": 224}


def tiny_vit():
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    return ViTModel(ViTConfig(**TINY_VIT, layer_norm_eps=1e-6), add_pooling_layer=False)


def write_samples(path: Path, images: np.ndarray, prompts: list[str] | None) -> Path:
    extra = {} if prompts is None else {"prompts": np.asarray(prompts, dtype=str)}
    np.savez(path, images_nfe1=images, seeds=np.arange(len(images)), timing="{}", checkpoint="ck.safetensors",
             **extra)
    return path


def write_shots(folder: Path, images: np.ndarray) -> Path:
    from unidad.data.folders import write_image_folder

    return write_image_folder(images, folder)


# ------------------------------------------------------------------------------------- preparation
def test_center_square_keeps_the_central_square_and_resizes_bicubic():
    img = np.zeros((1, 4, 8, 3), np.uint8)
    img[:, :, 2:6] = 200  # the central 4x4 square
    out = sdp.center_square(img, size=4)
    assert out.shape == (1, 4, 4, 3) and (out == 200).all()
    assert sdp.center_square(np.full((2, 224, 224, 3), 7, np.uint8)).shape == (2, 224, 224, 3)
    with pytest.raises(ValueError, match="uint8 NHWC"):
        sdp.center_square(np.zeros((1, 3, 8, 8), np.float32))


def test_normalisation_constants():
    white = np.full((1, 2, 2, 3), 255, np.uint8)
    x = sdp.normalise(white, sdp.IMAGENET_MEAN, sdp.IMAGENET_STD)
    assert x.shape == (1, 3, 2, 2)
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(x[0, :, 0, 0], expected)
    x = sdp.normalise(np.zeros((1, 1, 1, 3), np.uint8), sdp.CLIP_MEAN, sdp.CLIP_STD)
    assert torch.allclose(x.flatten(), -torch.tensor([0.48145466, 0.4578275, 0.40821073])
                          / torch.tensor([0.26862954, 0.26130258, 0.27577711]))


# ------------------------------------------------------------------------------------- aggregation
def test_aggregation_is_per_prompt_then_mean_over_prompts():
    # real: e1, e2; prompt A: one image along e1 (cosines 1, 0 -> 0.5); prompt B: three images along e2,
    # -e1, -e1 (cosines (0, 1), (-1, 0), (-1, 0) -> -1/6). Subject: (0.5 - 1/6) / 2 = 1/6; the pooled
    # mean over all 8 pairs would be 0 instead.
    real = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    gen = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    groups = sdp.prompt_groups(["A", "B", "B", "B"], 4)
    res = sdp.subject_similarity(real, gen, groups)
    assert res["per_prompt"] == pytest.approx({"A": 0.5, "B": -1 / 6})
    assert res["value"] == pytest.approx(1 / 6)
    assert float((real @ gen.T).mean()) == pytest.approx(0.0)


def test_prompt_groups_keep_first_appearance_order_and_check_counts():
    groups = sdp.prompt_groups(["b", "a", "b"], 3)
    assert list(groups) == ["b", "a"] and groups["b"].tolist() == [0, 2]
    with pytest.raises(ValueError, match="2 prompts stored for 3 images"):
        sdp.prompt_groups(["a", "b"], 3)


# ------------------------------------------------------------------------------------- DINO
def test_dino_embedding_is_the_cls_token_after_the_final_norm():
    model = tiny_vit()
    x = torch.randn(2, 3, 224, 224)
    out = dino_metric.DinoEmbed(model, {})(x)
    with torch.no_grad():
        hidden = model.embeddings(x)
        for layer in model.layers:
            hidden = layer(hidden, None)
        expected = model.layernorm(hidden)[:, 0]
    assert out.shape == (2, 32) and torch.allclose(out, expected, atol=1e-5)


def test_load_dino_reads_a_local_folder_and_refuses_another_architecture(tmp_path):
    model = tiny_vit()
    model.config.layer_norm_eps = 1e-12  # as facebook/dino-vits16's config.json says
    model.save_pretrained(tmp_path / "dino")
    loaded = dino_metric.load_dino(tmp_path / "dino", expected=TINY_VIT)
    x = torch.randn(1, 3, 224, 224)
    assert torch.allclose(loaded(x), dino_metric.DinoEmbed(model, {})(x))
    assert len(loaded.provenance["weights_sha256"]) == 64
    assert all(m.eps == 1e-6 for m in loaded.model.modules() if isinstance(m, torch.nn.LayerNorm))
    with pytest.raises(ValueError, match="is not DINO ViT-S/16"):
        dino_metric.load_dino(tmp_path / "dino")  # the real ViT-S/16 shape is expected by default
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "dino" / "model.safetensors"))
    save_file({k: v for k, v in state.items() if "layernorm.weight" != k}, str(tmp_path / "dino" / "model.safetensors"))
    with pytest.raises(ValueError, match="does not fit DINO ViT-S/16"):
        dino_metric.load_dino(tmp_path / "dino", expected=TINY_VIT)


def _subject_case(tmp_path, prompts=("a prt cube in the snow",) * 2 + ("a red prt cube",) * 2):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (len(prompts), 32, 32, 3), dtype=np.uint8)
    shots = rng.integers(0, 256, (3, 48, 40, 3), dtype=np.uint8)  # not square: centre-cropped
    samples = write_samples(tmp_path / "samples.npz", images, list(prompts) if prompts else None)
    shots_dir = write_shots(tmp_path / "shots", shots)
    return MetricInputs(samples=samples, shots_dir=shots_dir, shots=3, unique_token="prt"), images, shots


def test_dino_metric_record_through_the_registry(tmp_path, monkeypatch):
    model = dino_metric.DinoEmbed(tiny_vit(), {"id": "tiny", "weights_sha256": "0" * 64})
    monkeypatch.setattr(dino_metric, "staged_dino", lambda: model)
    inputs, images, shots = _subject_case(tmp_path)
    rec = get_metric("dino").compute(inputs, 1, inputs.images[1])
    assert rec["n_reference"] == 3 and rec["extractor"] == "tiny"
    per_prompt = rec["params"]["per_prompt"]
    assert list(per_prompt) == ["a prt cube in the snow", "a red prt cube"]
    real = sdp.embed_images(model, sdp.center_square(shots), sdp.IMAGENET_MEAN, sdp.IMAGENET_STD)
    gen = sdp.embed_images(model, images, sdp.IMAGENET_MEAN, sdp.IMAGENET_STD)
    first = float((real @ gen[:2].T).mean())
    assert per_prompt["a prt cube in the snow"] == pytest.approx(first)
    assert rec["values"]["dino"] == pytest.approx(np.mean(list(per_prompt.values())))
    assert get_metric("dino").needs == frozenset({"shots"})


def test_sdp_metrics_refuse_unprompted_samples(tmp_path, monkeypatch):
    monkeypatch.setattr(dino_metric, "staged_dino", lambda: dino_metric.DinoEmbed(tiny_vit(), {}))
    inputs, _, _ = _subject_case(tmp_path, prompts=(None,) * 0)
    with pytest.raises(ValueError, match="needs prompts stored with the samples"):
        get_metric("dino").compute(inputs, 1, inputs.images[1])


def test_dino_needs_the_staged_weights_and_says_how_to_get_them(monkeypatch, tmp_path):
    from unidad import weights

    monkeypatch.setenv("UNIDAD_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    dino_metric.staged_dino.cache_clear()
    with pytest.raises(weights.WeightsError, match="unidad weights fetch dino_vits16"):
        dino_metric.staged_dino()


def test_metric_inputs_carry_the_unique_token_for_prompted_runs_only():
    from unidad.config import load_config_file
    from unidad.jobs.params import metric_inputs
    from unidad.plan import Plan

    root = Path(__file__).resolve().parent.parent / "config"
    sdp_plan = Plan(load_config_file(root / "paper_sdp.yaml"))
    slug = next(iter(sdp_plan.runs))
    assert metric_inputs(sdp_plan, slug, sdp_plan.runs[slug].checkpoint_steps[-1])["unique_token"] == "prt"
    fsig = Plan(load_config_file(root / "paper_fsig.yaml"))
    slug = next(iter(fsig.runs))
    assert "unique_token" not in metric_inputs(fsig, slug, fsig.runs[slug].checkpoint_steps[-1])


# ------------------------------------------------------------------------------------- CLIP-I, CLIP-T
def tiny_clip():
    import open_clip
    from open_clip.model import CLIP

    from unidad.metrics.clip_model import ARCH, ClipEmbed

    torch.manual_seed(0)
    model = CLIP(16, {"layers": 1, "width": 32, "head_width": 16, "patch_size": 32, "image_size": 224},
                 {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}, quick_gelu=True)
    return ClipEmbed(model, open_clip.get_tokenizer(ARCH), {"id": "tiny-clip", "weights_sha256": "1" * 64})


class FixedEmbed:
    """A hand-made 'CLIP': the images of one batch get the given embeddings, texts theirs."""

    def __init__(self, images, texts):
        self.images, self.texts = torch.tensor(images, dtype=torch.float64), texts

    def __call__(self, x):
        assert x.shape[1:] == (3, 224, 224)
        return self.images[: len(x)]

    def text(self, texts):
        return torch.tensor([self.texts[t] for t in texts], dtype=torch.float64)


def test_clip_t_drops_the_token_and_averages_per_prompt_then_over_prompts():
    from unidad.metrics.clip_t import prompt_fidelity

    # prompt A's one image matches its text (1); prompt B's three images: 0, 0, 1 -> 1/3; subject 2/3
    model = FixedEmbed([[1, 0], [0, 1], [0, 1], [1, 0]], {"a cube": [1.0, 0.0], "a red cube": [1.0, 0.0]})
    images = np.zeros((4, 40, 30, 3), np.uint8)
    res = prompt_fidelity(model, images, ["a prt cube", "a red prt cube", "a red prt cube", "a red prt cube"], "prt")
    assert res["texts"] == {"a prt cube": "a cube", "a red prt cube": "a red cube"}
    assert res["per_prompt"] == pytest.approx({"a prt cube": 1.0, "a red prt cube": 1 / 3})
    assert res["value"] == pytest.approx(2 / 3)


def test_clip_metrics_through_the_registry_with_a_tiny_clip(tmp_path, monkeypatch):
    from unidad.metrics import clip_model

    model = tiny_clip()
    monkeypatch.setattr(clip_model, "staged_clip", lambda: model)
    inputs, images, shots = _subject_case(tmp_path)
    rec = get_metric("clip_t").compute(inputs, 1, inputs.images[1])
    assert rec["params"]["unique_token_removed"] == "prt" and "'prt'" in rec["variant"]
    assert rec["params"]["texts"] == {"a prt cube in the snow": "a cube in the snow", "a red prt cube": "a red cube"}
    gen = sdp.embed_images(model, images, sdp.CLIP_MEAN, sdp.CLIP_STD)
    text = model.text(["a cube in the snow"])[0]
    assert rec["params"]["per_prompt"]["a prt cube in the snow"] == pytest.approx(float((gen[:2] @ text).mean()))
    assert -1 <= rec["values"]["clip_t"] <= 1 and rec["extractor"] == "tiny-clip"

    rec = get_metric("clip_i").compute(inputs, 1, inputs.images[1])
    real = sdp.embed_images(model, shots, sdp.CLIP_MEAN, sdp.CLIP_STD)
    assert rec["params"]["per_prompt"]["a red prt cube"] == pytest.approx(float((real @ gen[2:].T).mean()))
    assert rec["params"]["mean"] == list(sdp.CLIP_MEAN) and rec["n_reference"] == 3

    inputs.unique_token = None
    with pytest.raises(ValueError, match="needs the run's unique token"):
        get_metric("clip_t").compute(inputs, 1, inputs.images[1])


def test_load_clip_refuses_a_file_that_is_not_openai_vit_b32(tmp_path):
    from safetensors.torch import save_file

    from unidad.metrics.clip_model import load_clip

    with pytest.raises(ValueError, match="is not a .safetensors file"):
        load_clip(tmp_path / "ViT-B-32.pt")
    save_file({k: v.contiguous() for k, v in tiny_clip().model.state_dict().items()}, str(tmp_path / "tiny.safetensors"))
    with pytest.raises(ValueError, match="does not fit open_clip ViT-B-32-quickgelu"):
        load_clip(tmp_path / "tiny.safetensors")


def test_sdp_metrics_are_registered_in_the_order_of_table_3():
    from unidad.metrics.registry import metric_ids

    ids = metric_ids()
    assert [m for m in ids if m in ("dino", "clip_i", "clip_t")] == ["dino", "clip_i", "clip_t"]
    assert get_metric("clip_t").needs == frozenset() and get_metric("clip_i").needs == frozenset({"shots"})


# ------------------------------------------------------------------------------------- with weights
@pytest.mark.weights
def test_case7_zero_shot_through_the_clip_metrics_loader_and_preparation():
    """metrics.md case 7, through load_clip and the SDP preparation (central square, bicubic 224)."""
    from PIL import Image

    from unidad import weights
    from unidad.metrics.clip_model import WEIGHTS, load_clip

    try:
        path = weights.resolve(WEIGHTS)
    except weights.WeightsError as err:
        pytest.skip(f"CLIP ViT-B/32 OpenAI weights not staged ({err})")
    model = load_clip(path)
    with Image.open(Path(__file__).parent / "data" / "open_clip" / "CLIP.png") as img:
        image = np.asarray(img.convert("RGB"))[None]
    img_emb = sdp.embed_images(model, image, sdp.CLIP_MEAN, sdp.CLIP_STD)
    txt = model.text(["a diagram", "a dog", "a cat"])
    probs = (100.0 * img_emb @ txt.T).softmax(dim=-1)[0].tolist()
    assert probs == pytest.approx([0.9927937, 0.00421068, 0.00299572], abs=2e-3)


# ------------------------------------------------------------------------------------- diversity
def mean_gap(a, b):
    """A hand-made distance: |mean(a) - mean(b)| per pair."""
    return (a.mean((1, 2, 3)) - b.mean((1, 2, 3))).abs()


class FactorisedGap:
    """The same distance split like LPIPS (embed once per image, compare pairs)."""

    def __init__(self):
        self.embedded = 0

    def embed(self, x):
        self.embedded += len(x)
        return [x.mean((1, 2, 3)).view(-1, 1, 1, 1)]

    def compare(self, fa, fb):
        return (fa[0] - fb[0]).abs().view(-1)

    def __call__(self, a, b):
        return mean_gap(a, b)


DIVERSITY_PROMPTS = ["A", "A", "B", "B", "B", "C"]
DIVERSITY_VALUES = [0.0, 0.5, -0.5, -0.5, 0.5, 1.0]


def test_diversity_definitions_on_a_hand_made_case():
    from unidad.metrics.sdp_diversity import prompt_diversity

    # intra: A {0, .5} -> .5; B {-.5, -.5, .5} -> (0 + 1 + 1) / 3; C has one image (excluded) -> 7/12
    # inter: A-B 3.5/6, A-C 1.5/2, B-C 3.5/3 -> (7/12 + 9/12 + 14/12) / 3 = 5/6
    images = torch.tensor(DIVERSITY_VALUES).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous()
    for fn in (mean_gap, FactorisedGap()):
        res = prompt_diversity(images, DIVERSITY_PROMPTS, fn, batch_size=4)
        assert res["per_prompt_intra"] == pytest.approx({"A": 0.5, "B": 2 / 3})
        assert res["intra"] == pytest.approx(7 / 12) and res["inter"] == pytest.approx(5 / 6)
        assert (res["n_prompts"], res["n_prompts_intra"], res["n_prompt_pairs"]) == (3, 2, 3)
    with pytest.raises(ValueError, match="needs 2 or more prompts"):
        prompt_diversity(images[:2], ["A", "A"], mean_gap)
    with pytest.raises(ValueError, match="images_per_prompt >= 2"):
        prompt_diversity(images[:2], ["A", "B"], mean_gap)


def test_diversity_metric_through_the_registry(tmp_path):
    values = np.asarray(DIVERSITY_VALUES)
    images = np.broadcast_to(np.round((values + 1) * 127.5).astype(np.uint8).reshape(-1, 1, 1, 1), (6, 4, 4, 3))
    inputs = MetricInputs(samples=write_samples(tmp_path / "s.npz", np.ascontiguousarray(images), DIVERSITY_PROMPTS))
    inputs.__dict__["distance"] = (FactorisedGap(), {"id": "gap", "weights_sha256": "2" * 64})
    metric = get_metric("sdp_diversity")
    rec = metric.compute(inputs, 1, inputs.images[1])
    assert rec["values"]["sdp_intra_lpips"] == pytest.approx(7 / 12, abs=1e-2)
    assert rec["values"]["sdp_inter_lpips"] == pytest.approx(5 / 6, abs=1e-2)
    assert "intra: mean pairwise distance among the images of one prompt" in rec["variant"]
    assert "inter:" in metric.description and metric.needs == frozenset({"distance"})


def test_sdp_numbers_reach_the_tidy_table_per_subject(tmp_path, monkeypatch):
    """The evaluation job and the tidy table, unchanged, carry the SDP values: one row per subject (the
    run's dataset), with the definition in `variant` and the per-prompt values in the metric file."""
    import json

    from unidad.jobs.evaluate import compute_metrics
    from unidad.metrics import clip_model
    from unidad.results.collect import unit_rows

    monkeypatch.setattr(dino_metric, "staged_dino", lambda: dino_metric.DinoEmbed(tiny_vit(), {"id": "tiny", "weights_sha256": "0" * 64}))
    monkeypatch.setattr(clip_model, "staged_clip", tiny_clip)
    inputs, _, _ = _subject_case(tmp_path)
    inputs.__dict__["distance"] = (FactorisedGap(), {"id": "gap", "weights_sha256": "2" * 64})
    outputs = {m: tmp_path / f"{m}.json" for m in ("dino", "clip_i", "clip_t", "sdp_diversity")}
    compute_metrics(inputs, outputs, "run", 10)
    assert "per_prompt" in json.loads(outputs["clip_t"].read_text())["per_nfe"]["1"]["params"]
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"step": 10, "images_seen": 40, "device_hours": 0.0, "wall_seconds": 1.0}))
    unit = {"dataset": "cube_subject", "shots": 3, "method": "unidad", "stage": "unidad", "seed": 0, "slug": "run",
            "step": 10, "nfe": 1, "method_nfe": 1, "final": True, "ablation": "", "ablation_param": "",
            "ablation_value": "", "ablation_option": "", "metrics": {m: str(p) for m, p in outputs.items()},
            "summaries": [str(summary)]}
    rows = {r["metric"]: r for r in unit_rows("sdp", unit)}
    assert set(rows) == {"dino", "clip_i", "clip_t", "sdp_intra_lpips", "sdp_inter_lpips"}
    assert all(r["dataset"] == "cube_subject" and r["n_generated"] == 4 for r in rows.values())
    assert "inter:" in rows["sdp_inter_lpips"]["variant"] and "'prt'" in rows["clip_t"]["variant"]


def test_preflight_lists_the_weights_the_sdp_metrics_load():
    from unidad import preflight
    from unidad.config import load_config_file

    config = load_config_file(Path(__file__).resolve().parent.parent / "config" / "paper_sdp.yaml",
                              {"evaluation": {"metrics": ["dino", "clip_i", "clip_t", "speed"]}})
    needed = {r.name: r.needed_by for r in preflight.required_weights(config) if r.name}
    assert needed["dino_vits16"] == ("evaluation.metrics dino",)
    assert needed["clip_vit_b32_openai"] == ("evaluation.metrics clip_i", "evaluation.metrics clip_t")
