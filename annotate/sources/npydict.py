"""Read a ``.npy`` file that holds a pickled dict of arrays (``np.save(path, {key: array})``) WITHOUT unpickling it.

``np.load(allow_pickle=True)`` would run whatever the pickle stream names; a corpus file is user input, so this
module reads the stream as data instead: :func:`pickletools.genops` splits it into opcodes and a small stack
machine interprets only the opcodes and globals that a dict of numpy arrays produces. The three globals numpy
writes (``_reconstruct``, ``ndarray``, ``dtype``; plus ``_frombuffer`` and ``_codecs.encode`` of other pickle
protocols) are recognised by name and interpreted here; no looked-up callable is ever imported or called.
Anything else (another global, an opcode outside the list, a structured dtype) raises :class:`UnsafePickle`
naming the file, before anything from the stream has been acted on.
"""
from __future__ import annotations

import io
import pickletools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# dtype kinds a label array may have: bool, ints, floats, bytes, str, and object (the outer 0-d holder only)
PLAIN_KINDS = "biufSU"
MAX_PROTOCOL = 5

# (module, name) -> what the global stands for; module names of numpy 1.x and 2.x
GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("numpy.core.numeric", "_frombuffer"): "frombuffer",
    ("numpy._core.numeric", "_frombuffer"): "frombuffer",
    ("_codecs", "encode"): "encode",
}

# opcodes that only move data: constants, containers, the memo, framing
DATA_OPS = {
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP",
    "EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "LIST", "DICT",
    "APPEND", "APPENDS", "SETITEM", "SETITEMS",
    "BININT", "BININT1", "BININT2", "LONG1", "LONG4", "INT", "LONG", "BINFLOAT", "FLOAT", "NONE", "NEWTRUE", "NEWFALSE",
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8",
    "SHORT_BINSTRING", "BINSTRING", "STRING", "BYTEARRAY8",
    "BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE", "BINGET", "LONG_BINGET", "GET",
    "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD",
}


class UnsafePickle(ValueError):
    """The file is not a plain pickled dict of arrays (one line naming the file and what was found)."""


@dataclass(eq=False)
class _Global:
    """A recognised global: only its role, never the object."""

    role: str


@dataclass(eq=False)
class _Dtype:
    """``numpy.dtype(name, align, copy)`` awaiting its BUILD state; ``value`` once built."""

    name: str
    value: np.dtype | None = None


@dataclass(eq=False)
class _Array:
    """``_reconstruct(ndarray, (0,), b'b')`` awaiting its BUILD state; ``value`` (ndarray or object list) once built."""

    value: object = None
    built: bool = False
    shape: tuple = field(default_factory=tuple)


def _fail(path: str, what: str) -> UnsafePickle:
    return UnsafePickle(f"{path}: {what}; refusing to unpickle it (expected a dict of label arrays saved by numpy; "
                        "download the file again)")


def _as_bytes(x, path: str) -> bytes:
    if isinstance(x, (bytes, bytearray)):
        return bytes(x)
    if isinstance(x, str):  # protocol-2 strings reach Python 3 as latin-1 text
        return x.encode("latin-1")
    raise _fail(path, f"array data is a {type(x).__name__}, not bytes")


def _build_dtype(d: _Dtype, state, path: str) -> None:
    """Interpret dtype.__setstate__: (version, byteorder, subarray, names, fields, elsize, alignment[, flags])."""
    if not isinstance(state, tuple) or len(state) < 6 or not isinstance(state[1], str):
        raise _fail(path, f"unexpected dtype state {state!r:.80}")
    byteorder, subarray, names, fields, elsize = state[1], state[2], state[3], state[4], state[5]
    if subarray is not None or names is not None or fields is not None:
        raise _fail(path, "a structured or sub-array dtype")
    try:
        dt = np.dtype(d.name)  # a type code such as 'U1', '<i8', 'O8': parsed by numpy, nothing is called
    except TypeError:
        raise _fail(path, f"unknown dtype {d.name!r}") from None
    if dt.kind not in PLAIN_KINDS + "O":
        raise _fail(path, f"dtype {d.name!r} (kind {dt.kind!r})")
    if dt.kind in "SU" and isinstance(elsize, int) and elsize > 0:
        dt = np.dtype(f"{dt.kind}{elsize // (4 if dt.kind == 'U' else 1)}")
    if byteorder in "<>" and dt.kind not in "O":
        dt = dt.newbyteorder(byteorder)
    d.value = dt


def _array_from(data, dtype: np.dtype, shape: tuple, fortran: bool, path: str):
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if dtype.kind == "O":
        if not isinstance(data, list) or len(data) != n:
            raise _fail(path, "an object array whose items are not a list of the right length")
        return list(data)
    raw = _as_bytes(data, path)
    if len(raw) != n * dtype.itemsize:
        raise _fail(path, f"array data of {len(raw)} bytes for shape {shape} of {dtype}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _build_array(a: _Array, state, path: str) -> None:
    """Interpret ndarray.__setstate__: ([version,] shape, dtype, is_fortran, data)."""
    if isinstance(state, tuple) and len(state) == 5:
        state = state[1:]
    if not isinstance(state, tuple) or len(state) != 4:
        raise _fail(path, f"unexpected array state of {type(state).__name__}")
    shape, dt, fortran, data = state
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise _fail(path, f"array shape {shape!r:.60}")
    if not isinstance(dt, _Dtype) or dt.value is None:
        raise _fail(path, "an array whose dtype is not a plain numpy dtype")
    a.value, a.shape, a.built = _array_from(data, dt.value, shape, bool(fortran), path), shape, True


def _reduce(fn, args, path: str):
    """What REDUCE of a recognised global yields (interpreted here, never called)."""
    if not isinstance(fn, _Global) or not isinstance(args, tuple):
        raise _fail(path, "REDUCE of something other than a recognised numpy global")
    if fn.role == "reconstruct":
        if len(args) != 3 or not (isinstance(args[0], _Global) and args[0].role == "ndarray"):
            raise _fail(path, "_reconstruct of something other than numpy.ndarray")
        return _Array()
    if fn.role == "dtype":
        if not args or not isinstance(args[0], str):
            raise _fail(path, "numpy.dtype without a type code")
        return _Dtype(args[0])
    if fn.role == "frombuffer":  # (buffer, dtype, shape, order)
        if len(args) != 4 or not isinstance(args[1], _Dtype) or args[1].value is None or not isinstance(args[2], tuple):
            raise _fail(path, "unexpected _frombuffer arguments")
        a = _Array()
        a.value, a.shape, a.built = _array_from(args[0], args[1].value, args[2], args[3] == "F", path), args[2], True
        return a
    if fn.role == "encode":  # _codecs.encode(text, 'latin1'): how protocol 2 stores bytes
        if len(args) != 2 or not isinstance(args[0], str) or str(args[1]).lower().replace("-", "") != "latin1":
            raise _fail(path, "_codecs.encode with other than latin-1")
        return args[0].encode("latin-1")
    raise _fail(path, f"REDUCE of numpy.{fn.role}")


def _run(stream: bytes, path: str):
    """Interpret the pickle opcodes of ``stream``; returns the top object (with _Array/_Dtype placeholders)."""
    stack: list = []
    marks: list[list] = []
    memo: dict = {}

    def pop_mark() -> list:
        nonlocal stack
        if not marks:
            raise _fail(path, "unbalanced MARK")
        items, stack = stack, marks.pop()
        return items

    try:
        for op, arg, pos in pickletools.genops(io.BytesIO(stream)):
            name = op.name
            if name not in DATA_OPS:
                raise _fail(path, f"pickle opcode {name} at byte {pos}")
            if name == "PROTO":
                if arg > MAX_PROTOCOL:
                    raise _fail(path, f"pickle protocol {arg}")
            elif name in ("FRAME",):
                pass
            elif name == "STOP":
                if len(stack) != 1 or marks:
                    raise _fail(path, "a stream that does not end with one object")
                return stack[0]
            elif name == "MARK":
                marks.append(stack)
                stack = []
            elif name == "POP":
                stack.pop()
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                stack.append(stack[-1])
            elif name == "EMPTY_DICT":
                stack.append({})
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name == "TUPLE":
                items = pop_mark()  # (pop first: pop_mark rebinds ``stack``)
                stack.append(tuple(items))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                k = int(name[-1])
                items = tuple(stack[-k:])
                del stack[-k:]
                stack.append(items)
            elif name == "LIST":
                items = pop_mark()
                stack.append(items)
            elif name == "DICT":
                items = pop_mark()
                stack.append(_pairs_to_dict({}, items, path))
            elif name == "APPEND":
                v = stack.pop()
                _list(stack[-1], path).append(v)
            elif name == "APPENDS":
                items = pop_mark()
                _list(stack[-1], path).extend(items)
            elif name == "SETITEM":
                v, k = stack.pop(), stack.pop()
                _pairs_to_dict(_dict(stack[-1], path), [k, v], path)
            elif name == "SETITEMS":
                items = pop_mark()
                _pairs_to_dict(_dict(stack[-1], path), items, path)
            elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                if arg not in memo:
                    raise _fail(path, f"memo key {arg} read before it was written")
                stack.append(memo[arg])
            elif name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                stack.append(_global(module, attr, path))
            elif name == "STACK_GLOBAL":
                attr, module = stack.pop(), stack.pop()
                if not (isinstance(module, str) and isinstance(attr, str)):
                    raise _fail(path, "STACK_GLOBAL of non-strings")
                stack.append(_global(module, attr, path))
            elif name == "REDUCE":
                args, fn = stack.pop(), stack.pop()
                stack.append(_reduce(fn, args, path))
            elif name == "BUILD":
                state, obj = stack.pop(), stack[-1]
                if isinstance(obj, _Dtype) and obj.value is None:
                    _build_dtype(obj, state, path)
                elif isinstance(obj, _Array) and not obj.built:
                    _build_array(obj, state, path)
                else:
                    raise _fail(path, f"BUILD of a {type(obj).__name__}")
            elif name == "NONE":
                stack.append(None)
            elif name == "NEWTRUE":
                stack.append(True)
            elif name == "NEWFALSE":
                stack.append(False)
            else:  # constants: genops has already decoded the argument (ints, floats, str, bytes)
                stack.append(bytes(arg) if isinstance(arg, bytearray) else arg)
    except UnsafePickle:
        raise
    except (IndexError, KeyError, TypeError, ValueError) as e:  # a truncated or malformed stream
        raise _fail(path, f"a malformed pickle stream ({type(e).__name__}: {str(e)[:80]})") from None
    raise _fail(path, "a pickle stream without STOP")


def _global(module: str, attr: str, path: str) -> _Global:
    role = GLOBALS.get((module, attr))
    if role is None:
        raise _fail(path, f"the pickle names {module}.{attr}")
    return _Global(role)


def _list(x, path: str) -> list:
    if not isinstance(x, list):
        raise _fail(path, f"APPEND to a {type(x).__name__}")
    return x


def _dict(x, path: str) -> dict:
    if not isinstance(x, dict):
        raise _fail(path, f"SETITEM on a {type(x).__name__}")
    return x


def _pairs_to_dict(d: dict, items: list, path: str) -> dict:
    if len(items) % 2:
        raise _fail(path, "a dict with an odd number of items")
    for k, v in zip(items[::2], items[1::2]):
        if not isinstance(k, str):
            raise _fail(path, f"a dict key of type {type(k).__name__}")
        d[k] = v
    return d


def _value(v, key: str, path: str):
    """A dict value as numpy array (1-D arrays as stored; lists of str/int/float/bool as a numpy array)."""
    if isinstance(v, _Array):
        if not v.built or isinstance(v.value, list):
            raise _fail(path, f"entry {key!r} is an unfinished or object array")
        return v.value
    if isinstance(v, list) and all(isinstance(x, (str, bytes, int, float, bool)) for x in v):
        return np.asarray(v)
    raise _fail(path, f"entry {key!r} is a {type(v).__name__}, not an array")


def read_npy_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The dict saved in ``path`` by ``np.save(path, {str: array})``, read without unpickling (module docstring).

    Raises :class:`UnsafePickle` (one line naming the file) for anything that is not such a dict."""
    path = Path(path)
    p = str(path)
    data = path.read_bytes()
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"npy version {version}")
    except ValueError as e:  # the header is parsed by numpy's literal parser (no code runs)
        raise _fail(p, f"not an .npy file ({str(e)[:80]})") from None
    if dtype != np.dtype("O") or shape != ():
        raise _fail(p, f"an .npy array of {dtype} with shape {shape}, not a pickled dict")
    top = _run(data[f.tell():], p)
    if isinstance(top, _Array):  # np.save wraps the dict in a 0-d object array
        if not (top.built and isinstance(top.value, list) and len(top.value) == 1):
            raise _fail(p, "an object array that does not hold exactly one dict")
        top = top.value[0]
    if not isinstance(top, dict):
        raise _fail(p, f"a pickled {type(top).__name__}, not a dict")
    return {k: _value(v, k, p) for k, v in top.items()}
