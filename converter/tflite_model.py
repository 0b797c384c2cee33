"""Read a .tflite flatbuffer's operators, versions, options and tensors, without TensorFlow.

Uses the schema module that ships with ai-edge-litert, so the GPU check and the bundle
inspection run wherever the device runtime is installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ai_edge_litert import schema_py_generated as fb

_OP_NAMES = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
_ACT_NAMES = {v: k for k, v in vars(fb.ActivationFunctionType).items() if not k.startswith("_")}


@dataclass
class OpInfo:
    """One operator of a model, as the GPU rules need to see it."""

    name: str
    version: int
    index: int
    options: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    """Per input: dtype, shape and whether it is a constant (has a buffer)."""
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fused_activation(self) -> str | None:
        act = self.options.get("fused_activation_function")
        return None if act is None else _ACT_NAMES.get(act, str(act))


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _options(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    return {_snake(k): v for k, v in vars(obj).items() if isinstance(v, (int, float, bool))}


def tensor_types(model: bytes | Path) -> dict[str, int]:
    """How many tensors of each dtype the model holds: shows what quantization really did."""
    buf = Path(model).read_bytes() if isinstance(model, Path) else model
    m = fb.ModelT.InitFromPackedBuf(buf, 0)
    counts: dict[str, int] = {}
    for sg in m.subgraphs or []:
        for t in sg.tensors or []:
            name = _TYPE_NAMES.get(t.type, str(t.type))
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def _has_data(buffer: Any) -> bool:
    return buffer is not None and (
        (buffer.data is not None and len(buffer.data) > 0) or (buffer.size or 0) > 0
    )


def _folded_dequantize_outputs(m: Any, sg: Any) -> set[int]:
    """Outputs of DEQUANTIZE ops whose input is a constant (float16 weights).

    The GPU delegate consumes float16 weights directly instead of running these DEQUANTIZE ops
    ("the GPU delegate will not perform this dequantization, since it can operate on float16
    data", TFLite post-training float16 quantization guide), so their outputs are constants to
    the ops that read them.
    """
    out: set[int] = set()
    for op in sg.operators or []:
        code = m.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) != fb.BuiltinOperator.DEQUANTIZE:
            continue
        src = sg.tensors[int(op.inputs[0])]
        if m.buffers and src.buffer < len(m.buffers) and _has_data(m.buffers[src.buffer]):
            out.update(int(i) for i in op.outputs)
    return out


def read_ops(model: bytes | Path) -> list[OpInfo]:
    """Every operator of every subgraph, in execution order."""
    buf = Path(model).read_bytes() if isinstance(model, Path) else model
    m = fb.ModelT.InitFromPackedBuf(buf, 0)
    ops: list[OpInfo] = []
    for sg in m.subgraphs or []:
        tensors = sg.tensors or []
        folded = _folded_dequantize_outputs(m, sg)

        def describe(
            i: int, tensors: list[Any] = tensors, folded: set[int] = folded
        ) -> dict[str, Any]:
            if i < 0:
                return {"dtype": None, "shape": [], "constant": True, "optional": True}
            t = tensors[i]
            buffer = m.buffers[t.buffer] if m.buffers and t.buffer < len(m.buffers) else None
            constant = i in folded or _has_data(buffer)
            shape = [] if t.shape is None else [int(s) for s in t.shape]
            return {
                "dtype": _TYPE_NAMES.get(t.type, str(t.type)),
                "shape": shape,
                "constant": constant,
            }

        for k, op in enumerate(sg.operators or []):
            code = m.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            name = _OP_NAMES.get(builtin, f"BUILTIN_{builtin}")
            if name == "CUSTOM":
                name = code.customCode.decode() if code.customCode else "CUSTOM"
            ops.append(
                OpInfo(
                    name=name,
                    version=int(code.version),
                    index=k,
                    options=_options(op.builtinOptions),
                    inputs=[describe(int(i)) for i in (op.inputs if op.inputs is not None else [])],
                    outputs=[
                        describe(int(i)) for i in (op.outputs if op.outputs is not None else [])
                    ],
                )
            )
    return ops
