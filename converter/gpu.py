"""Our own TFLite GPU-delegate compatibility check.

TensorFlow's `Analyzer(gpu_compatibility=True)` answers "compatible" for models the delegate
rejects, so we read each operator from the flatbuffer and apply the rules of TensorFlow's
`gpu_compatibility.cc`, kept as data in `gpu_ops.json` (its source and commit are named there).
Every machine-checkable constraint is applied; a few structural rules the file states in code are
implemented below, one function each. An op the file does not list falls back to the CPU.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from converter.tflite_model import OpInfo, read_ops

RULES_FILE = Path(__file__).with_name("gpu_ops.json")


@dataclass
class OpProblem:
    """An operator that would not run on the GPU delegate, and why."""

    op: str
    index: int
    reason: str


@dataclass
class GpuReport:
    """Per model: does every op delegate, and which ones fall back to the CPU."""

    delegable: bool
    ops: dict[str, int]
    """Operator name -> count in the model."""
    fallback: list[OpProblem] = field(default_factory=list)
    rules_source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_rules(path: Path = RULES_FILE) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _runtime_inputs(op: OpInfo) -> int:
    return sum(1 for i in op.inputs if not i["constant"] and not i.get("optional"))


def _rank(op: OpInfo, index: int) -> int:
    return len(op.inputs[index]["shape"]) if index < len(op.inputs) else 0


def _keep_num_dims(op: OpInfo) -> str | None:
    if (
        op.options.get("keep_num_dims")
        and op.outputs
        and _rank(op, 0) != len(op.outputs[0]["shape"])
    ):
        return "keep_num_dims with input rank != output rank"
    return None


def _mul_same_rank(op: OpInfo) -> str | None:
    if len(op.inputs) != 2:
        return None
    a, b = op.inputs[0]["shape"], op.inputs[1]["shape"]
    if len(a) == len(b) and len(a) > 0:
        a_ge = all(x >= y for x, y in zip(a, b, strict=True))
        b_ge = all(y >= x for x, y in zip(a, b, strict=True))
        if not (a_ge or b_ge):
            return f"MUL of {a} x {b}: neither input is at least the other in every dimension"
    return None


def _broadcast(op: OpInfo) -> str | None:
    if len(op.inputs) != 2:
        return None
    a, b = op.inputs[0]["shape"], op.inputs[1]["shape"]
    if len(a) > 1 and len(b) > 1 and len(a) != len(b):
        for x, y in zip(reversed(a), reversed(b), strict=False):
            if x != y and 1 not in (x, y):
                return f"shapes {a} and {b} do not broadcast"
    return None


def _rank_3_or_4(op: OpInfo) -> str | None:
    r = _rank(op, 0)
    return None if r in (3, 4) else f"input rank {r}; only 3-D or 4-D tensors are supported"


SPECIAL: dict[str, list[Callable[[OpInfo], str | None]]] = {
    "FULLY_CONNECTED": [_keep_num_dims],
    "MUL": [_mul_same_rank, _broadcast],
    "ADD": [_broadcast],
    "SUB": [_broadcast],
    "DIV": [_broadcast],
    "SLICE": [_rank_3_or_4],
    "STRIDED_SLICE": [_rank_3_or_4],
}


def _check_constraint(op: OpInfo, c: dict[str, Any]) -> str | None:
    kind = c["kind"]
    if kind == "option_equals" and c["option"] in op.options:
        if op.options[c["option"]] != c["value"]:
            return f"{c['option']} = {op.options[c['option']]}, must be {c['value']}"
    elif kind == "fused_activation_in":
        act = op.fused_activation
        if act is not None and act not in c["allowed"]:
            return f"fused activation {act} not in {c['allowed']}"
    elif kind == "input_count":
        n = _runtime_inputs(op) if c.get("counts") == "runtime" else len(op.inputs)
        lo, hi = c.get("min"), c.get("max")
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            upper = "any" if hi is None else hi
            return f"{n} {c.get('counts', 'all')} inputs, allowed {lo}..{upper}"
    elif kind == "constant_input":
        index = c["index"]
        if index < len(op.inputs) and op.inputs[index]["constant"] != c["required"]:
            want = "constant" if c["required"] else "a runtime tensor"
            return f"input {index} must be {want}"
    elif kind == "max_dims":
        index = c.get("index", 0)
        if _rank(op, index) > c["dims"]:
            return f"input {index} has rank {_rank(op, index)} > {c['dims']}"
    return None


def check_ops(ops: list[OpInfo], rules: dict[str, Any] | None = None) -> GpuReport:
    """Apply the GPU rules to a list of operators."""
    rules = rules or load_rules()
    custom = set(rules.get("custom_ops", []))
    counts: dict[str, int] = {}
    problems: list[OpProblem] = []
    for op in ops:
        counts[op.name] = counts.get(op.name, 0) + 1
        spec = rules["ops"].get(op.name)
        if spec is None and op.name not in custom:
            problems.append(OpProblem(op.name, op.index, "not supported by the GPU delegate"))
            continue
        reasons = [_check_constraint(op, c) for c in (spec or {}).get("constraints", [])]
        reasons += [rule(op) for rule in SPECIAL.get(op.name, [])]
        problems += [OpProblem(op.name, op.index, r) for r in reasons if r]
    return GpuReport(not problems, dict(sorted(counts.items())), problems, rules.get("source", ""))


def check_model(model: bytes | Path, rules: dict[str, Any] | None = None) -> GpuReport:
    """GPU-delegate readiness of one .tflite model."""
    return check_ops(read_ops(model), rules)
