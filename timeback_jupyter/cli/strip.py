"""``jupyter timeback strip NOTEBOOK``: remove one student's run data before handing it on.

Removes ``metadata.timeback.run`` (the run id, the student's hash, status) and the saved state
of the completion widget (with the outputs that display it), and keeps the activity
declaration, so the next student's copy starts its own run. The file is replaced whole or not
at all.

Keys of ``metadata.timeback`` that strip does not know stay. An older schema version is left as
it is, not upgraded: stripping removes a student's data and nothing else, and the handed-out
notebook stays readable by every timeback-jupyter that read it before. A newer version is
refused and the file left untouched: it may keep student data where this version cannot see it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from traitlets import Unicode

from ..notebook_metadata import MetadataError, NewerVersionError, version_of
from .base import EXIT_USAGE, CLIError, Command, common_aliases
from .files import write_atomic

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# The CSS class the kernel's CompletionButton puts on its outer box; how strip recognises it
# among the notebook's saved widget models (it is composed of standard ipywidgets).
COMPLETION_WIDGET_CLASS = "timeback-completion"
_MODEL_REF = "IPY_MODEL_"


class NotANotebook(ValueError):
    """The file is not a Jupyter notebook we can rewrite; the message says why."""


@dataclass(frozen=True)
class StripResult:
    run_removed: bool
    widget_models: int  # saved widget models removed
    outputs: int  # outputs removed that displayed them

    @property
    def changed(self) -> bool:
        return self.run_removed or bool(self.widget_models) or bool(self.outputs)


def parse_notebook(text: str, where: str) -> dict[str, Any]:
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as err:
        raise NotANotebook(f"{where}: not a notebook (invalid JSON: {err})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotANotebook(f"{where}: not a notebook (no 'cells' list)")
    if not isinstance(nb.get("nbformat"), int) or nb["nbformat"] < 4:
        raise NotANotebook(
            f"{where}: not a notebook in format 4 (nbformat {nb.get('nbformat')!r}); "
            "upgrade it with `jupyter nbconvert --to notebook` first"
        )
    if not isinstance(nb.get("metadata", {}), dict):
        raise NotANotebook(f"{where}: metadata must be an object")
    return nb


def _refs(value: Any) -> set[str]:
    """Model ids referenced (``IPY_MODEL_<id>``) anywhere inside a widget's state."""
    if isinstance(value, str):
        return {value[len(_MODEL_REF) :]} if value.startswith(_MODEL_REF) else set()
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(_refs(v) for v in value.values())) if value else set()
    return set()


def _reachable(models: dict[str, Any], start: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = [m for m in start if m in models]
    while todo:
        model_id = todo.pop()
        if model_id in seen:
            continue
        seen.add(model_id)
        todo.extend(r for r in _refs(models[model_id]) if r in models and r not in seen)
    return seen


def _completion_models(models: dict[str, Any]) -> set[str]:
    """The completion widgets' models and the children only they use (layouts, styles...)."""
    roots = {
        model_id
        for model_id, model in models.items()
        if isinstance(model, dict)
        and COMPLETION_WIDGET_CLASS in ((model.get("state") or {}).get("_dom_classes") or [])
    }
    if not roots:
        return set()
    ours = _reachable(models, roots)
    shared = _reachable(models, set(models) - ours)
    return roots | (ours - shared)


def strip_run_data(nb: dict[str, Any]) -> StripResult:
    """Remove run data from a parsed notebook, in place; nothing changes when it raises
    (:class:`NewerVersionError` for a section of a newer timeback-jupyter)."""
    metadata = nb.setdefault("metadata", {})
    section = metadata.get("timeback")
    run_removed = False
    if section is not None:
        if not isinstance(section, dict):
            raise NotANotebook("metadata.timeback must be an object")
        try:
            version_of(section)
        except NewerVersionError:
            raise
        except MetadataError:
            pass  # not a version at all: still ours to strip, and left as it is
        run_removed = section.pop("run", None) is not None
    removed: set[str] = set()
    widgets = metadata.get("widgets")
    saved = widgets.get(WIDGET_STATE) if isinstance(widgets, dict) else None
    if isinstance(saved, dict) and isinstance(saved.get("state"), dict):
        models = saved["state"]
        removed = _completion_models(models)
        for model_id in removed:
            del models[model_id]
        if removed and not models:
            del widgets[WIDGET_STATE]
            if not widgets:
                del metadata["widgets"]
    outputs = 0
    if removed:
        for cell in nb["cells"]:
            if not isinstance(cell, dict) or not isinstance(cell.get("outputs"), list):
                continue
            kept = [o for o in cell["outputs"] if _view_model(o) not in removed]
            outputs += len(cell["outputs"]) - len(kept)
            cell["outputs"] = kept
    return StripResult(run_removed, len(removed), outputs)


def _view_model(output: Any) -> str | None:
    data = output.get("data") if isinstance(output, dict) else None
    view = data.get(WIDGET_VIEW) if isinstance(data, dict) else None
    model_id = view.get("model_id") if isinstance(view, dict) else None
    return model_id if isinstance(model_id, str) else None


def dump_notebook(nb: dict[str, Any]) -> str:
    """As nbformat writes notebooks (indent 1, sorted keys, UTF-8), so diffs stay small."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


class StripCommand(Command):
    """Remove run data (run id, student hash, completion widget state) from a notebook."""

    name = "jupyter-timeback-strip"
    verb = "strip"
    description = (
        "Remove a student's run data from a notebook before it is handed to other students: "
        "metadata.timeback.run and the saved state of the completion widget. The activity "
        "declaration stays. The file is replaced whole (or written to --output)."
    )
    examples = """
    jupyter timeback strip quiz.ipynb
    jupyter timeback strip quiz.ipynb --output handout/quiz.ipynb
    """
    aliases: ClassVar[dict[str, Any]] = {**common_aliases, "output": "StripCommand.output"}

    output = Unicode("", help="Write the stripped notebook here (default: in place).").tag(
        config=True
    )

    def run(self) -> int:
        if len(self.extra_args) != 1:
            raise CLIError("give exactly one NOTEBOOK to strip", EXIT_USAGE)
        source = Path(self.extra_args[0]).expanduser()
        nb = self._read(source)
        try:
            result = strip_run_data(nb)
        except (NotANotebook, NewerVersionError) as err:
            raise CLIError(f"{source}: {err}") from None
        target = Path(self.output).expanduser() if self.output else source
        if not result.changed and target == source:
            print(f"{source}: no run data to strip (left unchanged)")
            return 0
        write_atomic(target, dump_notebook(nb), keep_mode_of=source)
        done = []
        if result.run_removed:
            done.append("the run")
        if result.widget_models:
            done.append(
                f"{result.widget_models} completion widget model"
                f"{'s' if result.widget_models != 1 else ''}"
            )
        if result.outputs:
            done.append(f"{result.outputs} widget output{'s' if result.outputs != 1 else ''}")
        what = ", ".join(done) if done else "nothing (no run data)"
        where = f" into {target}" if target != source else ""
        print(f"{source}: removed {what}; kept the activity declaration{where}")
        return 0

    @staticmethod
    def _read(source: Path) -> dict[str, Any]:
        if not source.exists():
            raise CLIError(f"{source}: no such file")
        if source.is_dir():
            raise CLIError(f"{source}: is a directory, not a notebook")
        try:
            text = source.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise CLIError(f"{source}: not a notebook (not UTF-8 text)") from None
        except OSError as err:
            raise CLIError(f"{source}: cannot be read ({err.strerror or err})") from None
        try:
            return parse_notebook(text, str(source))
        except NotANotebook as err:
            raise CLIError(str(err)) from None
