"""Our reader/writer of MXNet's NDArray-list format against files MXNet 1.9.1 wrote.

Fixtures: tests/fixtures/gen_mxnet_params.py (``mxnet_params_*.params`` and the values
``mx.nd.load`` returned for them, ``mxnet_params_expected.npz``).
"""
import io
import os
import struct
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gluon_bof.model_zoo.mxnet_params import (MXNetParamsError, load_params, read_ndarray_list,
                                              save_params, write_ndarray_list)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXPECTED = dict(np.load(FIXTURES / "mxnet_params_expected.npz"))
from oracle import ORACLE  # tests/fixtures/oracle.py: $GLUONCV_ORACLE_PYTHON or $GLUONCV_ORACLE_DIR
DTYPES = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "u8": np.uint8,
          "i32": np.int32, "i8": np.int8, "i64": np.int64, "bool": np.bool_,
          "bf16": np.float32, "conv.weight": np.float32, "empty": np.float32}


def fixture(name):
    return FIXTURES / f"mxnet_params_{name}.params"


def expected(name):
    names = [str(n) for n in EXPECTED[f"{name}|__names__"]]
    keys = names or sorted((k.split("|")[1] for k in EXPECTED
                            if k.startswith(f"{name}|") and not k.endswith("__names__")), key=int)
    return names, [EXPECTED[f"{name}|{k}"] for k in keys]


@pytest.mark.parametrize("name", ["dtypes", "np_shape", "list", "prefixed", "gluon", "v1",
                                  "legacy"])
def test_reads_what_mxnet_loads(name):
    arrays, names = read_ndarray_list(fixture(name))
    ref_names, ref_arrays = expected(name)
    assert names == ref_names
    assert len(arrays) == len(ref_arrays)
    for arr, ref in zip(arrays, ref_arrays):
        assert arr.dtype == ref.dtype and arr.shape == ref.shape
        np.testing.assert_array_equal(arr, ref)


def test_dtypes_shapes_and_special_arrays():
    params = load_params(fixture("dtypes"))
    assert list(params) == list(DTYPES)
    for key, dtype in DTYPES.items():
        assert params[key].dtype == dtype, key
    np.testing.assert_array_equal(params["bf16"][:3], [1.5, -2.25, 3.0])  # exact in bfloat16
    assert abs(params["bf16"][3] - 1e-3) < 1e-3 * 2.0**-8  # 8 significant bits
    assert params["i64"][0] == -2**62 and params["empty"].shape == (0, 3)
    scalar = load_params(fixture("np_shape"))["scalar"]
    assert scalar.shape == () and scalar == 2.5


def test_prefixes_are_stripped_and_kept():
    params = load_params(fixture("prefixed"))
    assert list(params) == ["conv0_weight", "bn0_moving_var"]
    assert params.prefixes == {"conv0_weight": "arg", "bn0_moving_var": "aux"}
    np.testing.assert_array_equal(params["bn0_moving_var"], [0.5, 2.0])


@pytest.mark.parametrize("name", ["gluon", "prefixed", "np_shape", "list"])
def test_writer_reproduces_mxnet_bytes(name, tmp_path):
    """Read, write back: byte for byte what mx.nd.save wrote (V2, or V3 in np-shape mode)."""
    out = tmp_path / "out.params"
    if name == "list":
        write_ndarray_list(out, read_ndarray_list(fixture(name))[0])
    else:
        save_params(out, load_params(fixture(name)))
    assert out.read_bytes() == fixture(name).read_bytes()


def test_round_trip_every_dtype_through_a_stream():
    params = load_params(fixture("dtypes"))
    buf = io.BytesIO()
    save_params(buf, params)
    again = load_params(io.BytesIO(buf.getvalue()))
    assert list(again) == list(params)
    for k in params:
        assert again[k].dtype == params[k].dtype and again[k].shape == params[k].shape
        np.testing.assert_array_equal(again[k], params[k])


def test_unnamed_list_needs_read_ndarray_list():
    with pytest.raises(MXNetParamsError, match="mxnet_params_list.params.*unnamed list"):
        load_params(fixture("list"))


@pytest.mark.parametrize("cut", [0, 10, 24, 30, 60, 200, -9, -1])
def test_truncated_file_names_file(cut, tmp_path):
    data = fixture("gluon").read_bytes()
    path = tmp_path / "cut.params"
    path.write_bytes(data[:cut] if cut >= 0 else data[:len(data) + cut])
    with pytest.raises(MXNetParamsError, match=r"cut\.params: truncated"):
        load_params(path)


def test_foreign_files(tmp_path):
    npz = tmp_path / "foreign.params"
    np.save(npz.open("wb"), np.zeros((4, 4)))
    with pytest.raises(MXNetParamsError, match=r"foreign\.params: not an MXNet NDArray file"):
        load_params(npz)
    data = bytearray(fixture("gluon").read_bytes())
    data[24:28] = struct.pack("<I", 0xDEADBEEF)
    bad = tmp_path / "badmagic.params"
    bad.write_bytes(bytes(data))
    with pytest.raises(MXNetParamsError, match=r"badmagic\.params: array #0 starts with 0xDEADBE"):
        load_params(bad)


def test_unknown_dtype_sparse_and_uninitialised(tmp_path):
    data = bytearray(fixture("v1").read_bytes())
    data[24 + 4 + 4 + 16 + 8:24 + 4 + 4 + 16 + 12] = struct.pack("<i", 42)
    path = tmp_path / "dtype42.params"
    path.write_bytes(bytes(data))
    with pytest.raises(MXNetParamsError, match=r"dtype42\.params: array #0 has unknown dtype code"):
        load_params(path)
    with pytest.raises(MXNetParamsError, match=r"sparse\.params: array #0 .*row_sparse"):
        load_params(fixture("sparse"))
    none = struct.pack("<QQQ", 0x112, 0, 1) + struct.pack("<Iii", 0xF993FAC9, 0, 0)
    none += struct.pack("<QQ", 1, 1) + b"x"
    with pytest.raises(MXNetParamsError, match="<stream>: array #0 is an uninitialised NDArray"):
        load_params(io.BytesIO(none))


def test_writer_errors():
    with pytest.raises(MXNetParamsError, match="complex64 has no MXNet dtype code"):
        save_params(io.BytesIO(), {"c": np.zeros(2, np.complex64)})
    with pytest.raises(MXNetParamsError, match="0-d array needs np_shape=True"):
        save_params(io.BytesIO(), {"s": np.float32(1)}, np_shape=False)


@pytest.mark.skipif(not ORACLE.exists(), reason="needs the GluonCV/MXNet oracle venv")
def test_mxnet_loads_our_files(tmp_path):
    """MXNet reads our files: every dtype (V2), a 0-d array (V3), and Gluon's load_parameters."""
    rs = np.random.RandomState(3)
    arrays = {"f32": rs.standard_normal((2, 3)).astype(np.float32),
              "f64": rs.standard_normal(4), "f16": rs.standard_normal(3).astype(np.float16),
              "u8": np.arange(5, dtype=np.uint8), "i32": np.array([-7, 2**31 - 1], np.int32),
              "i8": np.array([-128, 127], np.int8), "i64": np.array([2**62], np.int64),
              "bool": np.array([True, False]), "empty": np.zeros((0, 3), np.float32)}
    save_params(tmp_path / "v2.params", arrays)
    save_params(tmp_path / "v3.params", {"s": np.float64(2.5), "m": np.ones((2, 2), np.int32)})
    save_params(tmp_path / "gluon.params", load_params(fixture("gluon")))
    np.savez(tmp_path / "ref.npz", **arrays)
    script = textwrap.dedent(f"""
        import mxnet as mx, numpy as np
        d, ref = mx.nd.load('{tmp_path}/v2.params'), np.load('{tmp_path}/ref.npz')
        assert list(d) == list(ref.files), list(d)
        for k in d:
            a = d[k].asnumpy()
            assert a.dtype == ref[k].dtype and a.shape == ref[k].shape, k
            assert (a == ref[k]).all(), k
        with mx.util.np_shape(True):
            v3 = mx.nd.load('{tmp_path}/v3.params')
        assert v3['s'].shape == () and float(v3['s'].asnumpy()) == 2.5
        net = mx.gluon.nn.HybridSequential()
        net.add(mx.gluon.nn.Conv2D(4, 3, use_bias=False), mx.gluon.nn.BatchNorm(),
                mx.gluon.nn.Dense(3))
        net.load_parameters('{tmp_path}/gluon.params')
        print('OK')
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    res = subprocess.run([str(ORACLE), "-c", script], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-2000:]


def test_shape_fields_that_overflow_int64_are_a_clear_error(tmp_path):
    """Dims 2**33 x 2**31 (x 4 bytes) multiply past int64 and used to wrap to 0, ending in numpy's
    'cannot reshape array of size 0' naming neither file nor array."""
    blob = struct.pack("<QQQ", 0x112, 0, 1)  # header: magic, reserved, 1 array
    blob += struct.pack("<Iii", 0xF993FAC9, 0, 2) + struct.pack("<qq", 2 ** 33, 2 ** 31)  # V2 dense, 2-d
    blob += struct.pack("<iii", 1, 0, 0) + b"\0" * 16  # cpu context, float32, a few bytes
    blob += struct.pack("<QQ", 1, 6) + b"weight"
    path = tmp_path / "huge.params"
    path.write_bytes(blob)
    with pytest.raises(MXNetParamsError, match=r"huge\.params: truncated file: array #0 claims shape \(8589934592, 2147483648\)"):
        load_params(path)
