#!/bin/sh
# tests/onnx/cli.sh BIN - ONNX files on kiln's command line: `--in NAME=FILE.pb`
# (a TensorProto, recognised by name or by content), models recognised by
# content whatever their name, and malformed files refused with a message that
# names the file and the byte.  Inputs come from Debian's libonnx-testdata;
# NumPy and onnx from /usr/bin/python3.  Last line: "onnx-cli: N passed, N failed".
K=${1:-build/kiln}
case $K in /*) ;; *) K=$(pwd)/$K ;; esac
PY=/usr/bin/python3
NODE=/usr/share/libonnx-testdata/data/node
. "$(dirname "$0")/../lib.sh"
scratch onnx-cli

# same_as_pb NAME NPY PB: the .npy file holds the TensorProto's values exactly.
same_as_pb() {
    if $PY -c "
import sys, numpy as np, onnx
from onnx import numpy_helper
t = onnx.TensorProto()
t.ParseFromString(open(sys.argv[2], 'rb').read())
a, b = numpy_helper.to_array(t), np.load(sys.argv[1])
sys.exit(0 if a.shape == b.shape and np.array_equal(a, b) else 1)" "$2" "$3"; then ok; else bad "$1: $2 differs from $3"; fi
}

if [ ! -d "$NODE" ]; then
    echo "onnx-cli: $NODE is missing (tools/install-deps.sh installs libonnx-testdata)"
    echo "onnx-cli: 0 passed, 1 failed"
    exit 1
fi

# ---- --in NAME=FILE.pb
R=$NODE/test_relu/test_data_set_0
cat >"$T/relu.kiln" <<'KILN'
graph f(x: f32[3, 4, 5]) -> f32[3, 4, 5] {
    return relu(x)
}
KILN
expect "pb input" 0 "" "$K" run "$T/relu.kiln" --device ref --in x="$R/input_0.pb" --out "$T/relu.npy"
same_as_pb "pb input" "$T/relu.npy" "$R/output_0.pb"
cp "$R/input_0.pb" "$T/x.tensor"
expect "pb input by content" 0 "" "$K" run "$T/relu.kiln" --device ref --in x="$T/x.tensor" --out "$T/relu2.npy"
same_as_pb "pb input by content" "$T/relu2.npy" "$R/output_0.pb"
# dtypes: i64 and bool tensors from the suite
cat >"$T/i64.kiln" <<'KILN'
graph f(x: i64[2, 1]) -> i64[2, 1] {
    return x
}
KILN
expect "pb i64" 0 "" "$K" run "$T/i64.kiln" --device ref --in x="$NODE/test_argmax_keepdims_example/test_data_set_0/output_0.pb"
expect "pb dtype mismatch" 1 "parameter 'x' is i64\[2, 1\], the file holds f32" \
    "$K" run "$T/i64.kiln" --device ref --in x="$R/input_0.pb"
expect "pb uint8 refused" 1 "dtype uint8, which kiln does not have" \
    "$K" run "$T/relu.kiln" --device ref --in x="$NODE/test_add_uint8/test_data_set_0/input_0.pb"
head -c 30 "$R/input_0.pb" >"$T/cut.pb"
expect "pb truncated" 1 "cut.pb: byte [0-9]+: TensorProto" "$K" run "$T/relu.kiln" --device ref --in x="$T/cut.pb"
cp "$T/relu.kiln" "$T/relu.kiln.pb"
expect "pb text" 1 "relu.kiln.pb: byte 0: TensorProto" "$K" run "$T/relu.kiln" --device ref --in x="$T/relu.kiln.pb"

# ---- models recognised by content, whatever the name
cp "$NODE/test_relu/model.onnx" "$T/model.bin"
expect "model by content" 0 "" "$K" run "$T/model.bin" --device ref --in x="$R/input_0.pb" --out "$T/m.npy"
same_as_pb "model by content" "$T/m.npy" "$R/output_0.pb"
expect "model check" 0 "" "$K" check "$T/model.bin"
head -c 40 "$NODE/test_conv_with_strides_padding/model.onnx" >"$T/cut.onnx"
expect "model truncated" 1 "cut.onnx: byte [0-9]+: .*runs past" "$K" check "$T/cut.onnx"
expect "model -g" 2 "one graph" "$K" run "$T/model.bin" -g nosuch

# ---- refusals: every problem listed, each naming the node, its op and opset
$PY - "$T" <<'PYEOF'
import sys, onnx
from onnx import helper as h, TensorProto as T
x = h.make_tensor_value_info("x", T.FLOAT, ["batch", 4])
y = h.make_tensor_value_info("y", T.FLOAT, None)
nodes = [h.make_node("Relu", ["x"], ["a"], name="ok_relu"),
         h.make_node("Unique", ["a"], ["b"], name="uniq"),
         h.make_node("Relu", ["b"], ["c"], name="after_uniq"),
         h.make_node("Elu", ["a"], ["d"], name="elu_bad", alpha=1.0, gamma=2.0),
         h.make_node("Foo", ["a"], ["e"], name="custom", domain="com.example"),
         h.make_node("Add", ["c", "d"], ["y"], name="sum")]
g = h.make_graph(nodes, "refusals", [x], [y])
m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.example", 1)])
onnx.save(m, sys.argv[1] + "/refusals.onnx")
g2 = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "dyn", [x], [y])
onnx.save(h.make_model(g2, opset_imports=[h.make_opsetid("", 13)]), sys.argv[1] + "/dyn.onnx")
PYEOF
expect "refusals" 1 "node 2: error: Unique 'uniq' \(opset 17\): not supported: operator Unique" "$K" check "$T/refusals.onnx"
grep -q "node 4: error: Elu 'elu_bad' (opset 17): not supported: attribute gamma" "$T/err" && ok || bad "refusals: attribute"
grep -q "node 5: error: Foo 'custom' (com.example opset 1): not supported: operator Foo of domain 'com.example'" \
    "$T/err" && ok || bad "refusals: domain"
[ "$(grep -c 'error:' "$T/err")" = 3 ] && ok || bad "refusals: 3 problems, each once (the node after Unique adds none)"
expect "refusals run" 1 "Unique" "$K" run "$T/refusals.onnx" --dim batch=2
# an opset beyond kiln's, an input dtype kiln lacks (the nodes reading it add nothing), an
# attribute value, an op that is newer than the model: every one listed, exit 1
$PY - "$T" <<'PYEOF'
import sys, onnx
from onnx import helper as h, TensorProto as T
x = h.make_tensor_value_info("x", T.FLOAT, ["batch", 4])
q = h.make_tensor_value_info("q", T.UINT8, [4])
y = h.make_tensor_value_info("y", T.FLOAT, None)
nodes = [h.make_node("Cast", ["q"], ["qf"], name="cast_q", to=T.FLOAT),
         h.make_node("Mul", ["x", "qf"], ["m"], name="mul_q"),
         h.make_node("STFT", ["x", "x"], ["s"], name="stft"),
         h.make_node("Resize", ["x", "", "sc"], ["z"], name="resize_tf", mode="linear",
                     coordinate_transformation_mode="tf_crop_and_resize"),
         h.make_node("Add", ["m", "z"], ["y"], name="sum")]
sc = h.make_tensor("sc", T.FLOAT, [2], [1.0, 2.0])
for opset in (9, 25):
    m = h.make_model(h.make_graph(nodes, "many", [x, q], [y], [sc]), opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.save(m, "%s/many%d.onnx" % (sys.argv[1], opset))
PYEOF
expect "refusals: opset 25" 1 "opset 25 is newer than kiln knows \(kiln implements opsets up to 21\)" \
    "$K" check "$T/many25.onnx"
grep -q "graph input 'q' has dtype uint8, which kiln does not have" "$T/err" && ok || bad "refusals: input dtype"
grep -q "node 3: error: STFT 'stft' (opset 25): not supported: operator STFT" "$T/err" && ok || bad "refusals: STFT"
grep -q "node 4: error: Resize 'resize_tf' (opset 25): not supported: coordinate_transformation_mode 'tf_crop_and_resize'" \
    "$T/err" && ok || bad "refusals: attribute value"
[ "$(grep -c 'error:' "$T/err")" = 4 ] && ok || bad "refusals at opset 25: 4 problems (Cast, Mul, Add add none)"
expect "refusals: old opset" 1 "node 4: error: Resize 'resize_tf' \(opset 9\): not supported: Resize before opset 10" \
    "$K" run "$T/many9.onnx" --dim batch=2
[ "$(grep -c 'error:' "$T/err")" = 3 ] && ok || bad "refusals at opset 9: 3 problems"

# ---- symbolic dimensions: dim_param names become kiln's symbolic dims
expect "dyn emit" 0 "" "$K" emit "$T/dyn.onnx" --emit=ir
grep -q "f32\[batch, 4\]" "$T/out" && ok || bad "dyn emit: the IR lacks f32[batch, 4]"
expect "dyn unbound" 2 "dimension batch of parameter 'x' is not bound" "$K" run "$T/dyn.onnx" --device ref
expect "dyn bound" 0 "" "$K" run "$T/dyn.onnx" --device ref --dim batch=3

# ---- a whole model: LeNet (tests/onnx/gen_lenet.py made it, and its NumPy reference)
D=$(cd "$(dirname "$0")" && pwd)
close_to_ref() { # NAME NPY: within 1e-4 of the largest reference value
    if $PY -c "
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
sys.exit(0 if a.shape == b.shape and np.abs(a - b).max() <= 1e-4 * np.abs(b).max() else 1)" "$2" "$D/lenet_output.npy"
    then ok; else bad "$1: $2 is not within 1e-4 of lenet_output.npy"; fi
}
for dev in ref cpu cuda-emu; do
    expect "lenet $dev" 0 "" "$K" run "$D/lenet.onnx" --device $dev --in input="$D/lenet_input.pb" --out "$T/lenet_$dev.npy"
    close_to_ref "lenet $dev" "$T/lenet_$dev.npy"
done

# ---- kiln import: readable source + weights that run as the model does
expect "import" 0 "wrote .*lenet.kiln" "$K" import "$D/lenet.onnx" -o "$T/imp"
grep -q "# /conv1/Conv: Conv" "$T/imp/lenet.kiln" && ok || bad "import: the node names are missing"
expect "import check" 0 "" "$K" check "$T/imp/lenet.kiln"
for dev in ref cpu; do
    expect "import run $dev" 0 "" "$K" run "$T/imp/lenet.kiln" --weights "$T/imp/lenet.safetensors" --device $dev \
        --in input="$D/lenet_input.pb" --out "$T/imp_$dev.npy"
    $PY -c "
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
sys.exit(0 if a.shape == b.shape and np.array_equal(a, b) else 1)" "$T/imp_$dev.npy" "$T/lenet_$dev.npy" && ok ||
        bad "import run $dev: the imported source's results differ from the model's"
done
expect "import twice" 0 "" "$K" import "$D/lenet.onnx" -o "$T/imp"
expect "import no -o" 2 "import needs -o DIR" "$K" import "$D/lenet.onnx"
expect "import of a program" 2 "import takes an ONNX model" "$K" import "$T/relu.kiln" -o "$T/imp2"
expect "import refused" 1 "Unique" "$K" import "$T/refusals.onnx" -o "$T/imp3"
[ ! -e "$T/imp3" ] && ok || bad "import refused: wrote $T/imp3 anyway"

# ---- inputs an op requires by opset: Upsample takes its scales as an
# attribute before opset 9 (one input) and as a second input from opset 9 on
$PY - "$T" <<'PYEOF'
import sys, numpy as np, onnx
from onnx import TensorProto, helper
t = sys.argv[1]
def upsample(opset, inputs, attrs, inits):
    node = helper.make_node("Upsample", inputs, ["y"], mode="nearest", **attrs)
    g = helper.make_graph([node], "up", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
onnx.save(upsample(8, ["x"], {"scales": [1.0, 1.0, 2.0, 3.0]}, []), t + "/up8.onnx")
onnx.save(upsample(9, ["x"], {}, []), t + "/up9_no_scales.onnx")
x = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
np.save(t + "/up_x.npy", x)
np.save(t + "/up_want.npy", x.repeat(2, axis=2).repeat(3, axis=3))
PYEOF
for dev in ref cpu; do
    expect "upsample opset 8 $dev" 0 "" "$K" run "$T/up8.onnx" --in x="$T/up_x.npy" --out "$T/up8_$dev.npy" --device $dev
    $PY -c "
import sys, numpy as np
sys.exit(0 if np.array_equal(np.load(sys.argv[1]), np.load(sys.argv[2])) else 1)" "$T/up8_$dev.npy" "$T/up_want.npy" &&
        ok || bad "upsample opset 8 $dev: differs from NumPy's repeat"
done
expect "upsample opset 9 without scales" 1 "input 2 \\(scales\\) is missing" "$K" check "$T/up9_no_scales.onnx"

# ---- nothing on stderr but kiln's own messages: LLVM's remarks about the
# generated code (a small reduction over axis 1 left scalar) are not printed
expect "no LLVM remarks" 0 "" env KILN_CACHE=off "$K" run "$NODE/test_logsoftmax_axis_1/model.onnx" --device=cpu --seed 1
[ ! -s "$T/err" ] && ok || bad "no LLVM remarks: stderr is not empty"

# ---- the REPL's :load of a model: a graph called with the inputs only
printf ':load %s\nx = load("%s")\np = lenet(x)\nargmax(p, axis=1)\n' "$D/lenet.onnx" "$D/lenet_input.pb" |
    "$K" repl --device ref >"$T/out" 2>"$T/err"
grep -q "loaded lenet from" "$T/out" && ok || bad "repl :load: no 'loaded' line"
want=$($PY -c "import numpy as np; print(' '.join(map(str, np.load('$D/lenet_output.npy').argmax(1))))")
grep -q "^\[$want\]" "$T/out" && ok || bad "repl :load: argmax is not [$want]"

summary onnx-cli
