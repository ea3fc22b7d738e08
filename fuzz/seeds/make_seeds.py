"""Writes the hand-built seed models of fuzz/corpus/load_align/.

Run with the onnx package installed (python3 fuzz/seeds/make_seeds.py from the
repository root). Every model is tiny (a few channels, small kernels) so that
libFuzzer's mutations land on graph structure and attributes rather than on
weight bytes. Deterministic: the weights come from a seeded generator.
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus", "load_align")
rng = np.random.default_rng(1234)


def w(name, *shape, dtype=np.float32):
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.5).astype(dtype), name)


def ints(name, vals):
    return numpy_helper.from_array(np.array(vals, dtype=np.int64), name)


def floats(name, vals):
    return numpy_helper.from_array(np.array(vals, dtype=np.float32), name)


def bn(prefix, c, x, y, inits):
    inits += [
        floats(prefix + "_g", rng.uniform(0.5, 1.5, c)),
        floats(prefix + "_b", rng.standard_normal(c) * 0.1),
        floats(prefix + "_m", rng.standard_normal(c) * 0.1),
        floats(prefix + "_v", rng.uniform(0.5, 1.5, c)),
    ]
    return helper.make_node(
        "BatchNormalization", [x, prefix + "_g", prefix + "_b", prefix + "_m", prefix + "_v"], [y], name=prefix
    )


def save(name, nodes, inits, in_shape, outs, opset=13, ir=8, inputs=None):
    g = helper.make_graph(
        nodes,
        name,
        inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outs],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="align-fuzz-seeds")
    m.ir_version = ir
    path = os.path.join(OUT, name + ".onnx")
    onnx.save(m, path)
    print(f"{path}: {os.path.getsize(path)} bytes")


def conv_bn_relu_conv():
    i = [w("w1", 5, 3, 3, 3), w("w2", 4, 5, 1, 1), w("b2", 4)]
    n = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        bn("bn1", 5, "c1", "n1", i),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], name="conv2"),
    ]
    save("conv_bn_relu_conv_op13", n, i, [1, 3, 4, 4], [("y", [1, 4, 4, 4])])


def conv_split_concat():
    i = [w("w1", 6, 3, 1, 1), w("b1", 6), ints("split", [3, 3]), w("w2", 5, 3, 3, 3), w("w3", 4, 11, 1, 1)]
    n = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="cv1"),
        helper.make_node("Split", ["c1", "split"], ["s0", "s1"], name="split_node", axis=1),
        helper.make_node("Conv", ["s1", "w2"], ["c2"], name="cv2", pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c2"], ["g2"], name="sig"),
        helper.make_node("Mul", ["c2", "g2"], ["a2"], name="silu"),
        helper.make_node("Concat", ["s0", "s1", "a2"], ["cat"], name="cat", axis=1),
        helper.make_node("Conv", ["cat", "w3"], ["y"], name="cv3"),
    ]
    save("conv_split_concat_op13", n, i, [1, 3, 4, 4], [("y", [1, 4, 4, 4])])


def convtranspose_bn():
    i = [w("w1", 5, 3, 1, 1), w("wt", 5, 6, 2, 2), w("bt", 6), w("w3", 2, 6, 1, 1)]
    n = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
        helper.make_node("ConvTranspose", ["c1", "wt", "bt"], ["d1"], name="deconv", strides=[2, 2]),
        bn("bn1", 6, "d1", "n1", i),
        helper.make_node("LeakyRelu", ["n1"], ["r1"], name="lrelu", alpha=0.1),
        helper.make_node("Conv", ["r1", "w3"], ["y"], name="conv3"),
    ]
    save("convtranspose_bn_op13", n, i, [1, 3, 3, 3], [("y", [1, 2, 6, 6])])


def csp_concat_bn_op11():
    # BottleneckCSP: BN over Concat(conv, conv); Split with the attribute (opset 11).
    i = [w("wa", 3, 3, 1, 1), w("wb", 4, 3, 1, 1), w("wc", 4, 7, 1, 1), w("wd", 2, 2, 1, 1)]
    n = [
        helper.make_node("Conv", ["x", "wa"], ["a"], name="cva"),
        helper.make_node("Conv", ["x", "wb"], ["b"], name="cvb"),
        helper.make_node("Concat", ["a", "b"], ["cat"], name="cat", axis=1),
        bn("bn", 7, "cat", "n", i),
        helper.make_node("LeakyRelu", ["n"], ["r"], name="act", alpha=0.1),
        helper.make_node("Conv", ["r", "wc"], ["c"], name="cvc"),
        helper.make_node("Split", ["c"], ["c0", "c1"], name="split", axis=1, split=[2, 2]),
        helper.make_node("Add", ["c0", "c1"], ["s"], name="add"),
        helper.make_node("Clip", ["s"], ["h"], name="clip"),
        helper.make_node("Conv", ["h", "wd"], ["y"], name="cvd", kernel_shape=[1, 1]),
    ]
    save("csp_concat_bn_op11", n, i, [1, 3, 4, 4], [("y", [1, 2, 4, 4])], opset=11, ir=6)


def depthwise_resize_slice():
    i = [
        w("w1", 5, 3, 1, 1), w("w1b", 5), w("dw", 5, 1, 3, 3), w("dwb", 5),
        floats("roi", []), floats("scales", [1, 1, 2, 2]),
        ints("st", [0]), ints("en", [3]), ints("ax", [1]), ints("sp", [1]),
        w("w3", 4, 3, 1, 1),
    ]
    n = [
        helper.make_node("Conv", ["x", "w1", "w1b"], ["c1"], name="pw"),
        helper.make_node("Conv", ["c1", "dw", "dwb"], ["c2"], name="dwconv", group=5, pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c2"], ["r"], name="relu6"),
        helper.make_node("Resize", ["r", "roi", "scales"], ["u"], name="up", mode="nearest"),
        helper.make_node("Slice", ["u", "st", "en", "ax", "sp"], ["sl"], name="slice"),
        helper.make_node("MaxPool", ["sl"], ["mp"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["mp", "w3"], ["y"], name="conv3"),
    ]
    save("depthwise_resize_slice_op13", n, i, [1, 3, 4, 4], [("y", [1, 4, 4, 4])])


def flatten_gemm():
    i = [w("w1", 5, 3, 3, 3), w("b1", 5), w("fc", 4, 5), w("fcb", 4), w("mm", 4, 3), ints("shape", [1, 20])]
    n = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r1"], ["gp"], name="gap"),
        helper.make_node("Flatten", ["gp"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["g"], name="gemm", transB=1),
        helper.make_node("MatMul", ["g", "mm"], ["y"], name="matmul"),
    ]
    save("flatten_gemm_op13", n, i, [1, 3, 5, 5], [("y", [1, 3])])


def constants_and_elementwise():
    # Weights and per-channel constants that are node outputs, not initializers.
    wt = w("w1c", 5, 3, 1, 1)
    i = [ints("shp", [5, 1, 1]), ints("ax", [0]), w("scale", 5), ints("pads", [0, 0, 1, 1, 0, 0, 1, 1]), w("w2", 3, 5, 3, 3)]
    n = [
        helper.make_node("Constant", [], ["w1"], name="wconst", value=wt),
        helper.make_node("Identity", ["w1"], ["w1i"], name="wid"),
        helper.make_node("Conv", ["x", "w1i"], ["c1"], name="conv1"),
        helper.make_node("ConstantOfShape", ["shp"], ["ones"], name="cos",
                         value=numpy_helper.from_array(np.array([0.5], dtype=np.float32))),
        helper.make_node("Add", ["c1", "ones"], ["a1"], name="add"),
        helper.make_node("Unsqueeze", ["scale", "ax"], ["s1"], name="unsq"),
        helper.make_node("Constant", [], ["shape3"], name="shape3", value_ints=[5, 1, 1]),
        helper.make_node("Reshape", ["scale", "shape3"], ["s2"], name="reshape"),
        helper.make_node("Mul", ["a1", "s2"], ["m1"], name="mul"),
        helper.make_node("Constant", [], ["two"], name="two", value_float=2.0),
        helper.make_node("Div", ["m1", "two"], ["d1"], name="div"),
        helper.make_node("Pad", ["d1", "pads"], ["p1"], name="pad"),
        helper.make_node("Conv", ["p1", "w2"], ["y"], name="conv2"),
    ]
    save("constants_elementwise_op13", n, i, [1, 3, 4, 4], [("y", [1, 3, 4, 4])])


def opset18_split_resize_sizes():
    i = [w("w1", 6, 3, 1, 1), ints("sizes", [1, 3, 8, 8]), w("w2", 2, 3, 1, 1), w("slope", 3, 1, 1)]
    n = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
        helper.make_node("Split", ["c1"], ["a", "b"], name="split", axis=1, num_outputs=2),
        helper.make_node("PRelu", ["a", "slope"], ["pa"], name="prelu"),
        helper.make_node("Sub", ["pa", "b"], ["d"], name="sub"),
        helper.make_node("Resize", ["d", "", "", "sizes"], ["u"], name="up", mode="nearest"),
        helper.make_node("Conv", ["u", "w2"], ["y"], name="conv2"),
    ]
    save("split_resize_sizes_op18", n, i, [1, 3, 4, 4], [("y", [1, 2, 8, 8])], opset=18, ir=8)


def opset9_upsample_slice():
    # IR 3 style: initializers also listed as graph inputs; attribute Slice.
    i = [w("w1", 5, 3, 1, 1), floats("sc", [1, 1, 2, 2]), w("w2", 2, 4, 1, 1)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])] + [
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in i
    ]
    n = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
        helper.make_node("Upsample", ["c1", "sc"], ["u"], name="up", mode="nearest"),
        helper.make_node("Slice", ["u"], ["s"], name="slice", starts=[1], ends=[5], axes=[1]),
        helper.make_node("AveragePool", ["s"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p", "w2"], ["y"], name="conv2"),
    ]
    save("upsample_slice_op9", n, i, [1, 3, 2, 2], [("y", [1, 2, 2, 2])], opset=9, ir=3, inputs=inputs)


def fp16_weights():
    i = [w("w1", 5, 3, 1, 1, dtype=np.float16), w("b1", 5, dtype=np.float16), w("w2", 3, 5, 1, 1, dtype=np.float16)]
    inp = [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 3, 2, 2])]
    i2 = []
    n = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1"),
        bn("bn", 5, "c1", "n1", i2),
        helper.make_node("Sigmoid", ["n1"], ["s"], name="sig"),
        helper.make_node("Conv", ["s", "w2"], ["y"], name="conv2"),
    ]
    for t in i2:  # BN params in fp16 too
        a = numpy_helper.to_array(t).astype(np.float16)
        i.append(numpy_helper.from_array(a, t.name))
    g = helper.make_graph(n, "fp16", inp, [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 3, 2, 2])], i)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, os.path.join(OUT, "fp16_weights_op13.onnx"))


def external_data():
    # Weights stored in the external file "w.bin" that the fuzz target writes
    # into its sandbox folder (4096 bytes).
    ext = []
    for name, shape, off in [("w1", [5, 3, 1, 1], 0), ("w2", [2, 5, 1, 1], 64)]:
        t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=shape)
        t.data_location = TensorProto.EXTERNAL
        for k, v in [("location", "w.bin"), ("offset", str(off)), ("length", str(4 * int(np.prod(shape))))]:
            e = t.external_data.add()
            e.key, e.value = k, v
        ext.append(t)
    n = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2"),
    ]
    g = helper.make_graph(n, "ext", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])], ext)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    with open(os.path.join(OUT, "external_data_op13.onnx"), "wb") as f:
        f.write(m.SerializeToString())


def unknown_op_and_transpose():
    i = [w("w1", 5, 3, 1, 1), w("w2", 3, 5, 1, 1)]
    n = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
        helper.make_node("MyOp", ["c1"], ["u"], name="custom", domain="com.example"),
        helper.make_node("Softmax", ["u"], ["sm"], name="softmax", axis=1),
        helper.make_node("Conv", ["sm", "w2"], ["c2"], name="conv2"),
        helper.make_node("Transpose", ["c2"], ["y"], name="tr", perm=[0, 1, 3, 2]),
    ]
    g = helper.make_graph(n, "unk", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 2, 2])], i)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)])
    m.ir_version = 8
    onnx.save(m, os.path.join(OUT, "unknown_op_symbolic_op13.onnx"))


def light_constantofshape_weights():
    # Like onnx's light_* test models (light_squeezenet, light_resnet50):
    # IR 3, opset 9, every weight a ConstantOfShape of an int64 "__SHAPE"
    # initializer, initializers also listed as graph inputs; a fire module
    # (squeeze conv, two expand convs, Concat), a Sum residual, GAP, Flatten,
    # Gemm, Softmax. Tiny, unlike the 15 KB light_squeezenet.
    i = []
    n = []

    def cw(name, shape):
        i.append(ints(name + "__SHAPE", shape))
        n.append(helper.make_node("ConstantOfShape", [name + "__SHAPE"], [name], name=name + "_cos",
                                  value=numpy_helper.from_array(np.array([0.02], dtype=np.float32))))
        return name

    n.append(helper.make_node("Conv", ["x", cw("c1_w", [6, 3, 3, 3]), cw("c1_b", [6])], ["c1"], name="c1", pads=[1, 1, 1, 1]))
    n.append(helper.make_node("Relu", ["c1"], ["r1"], name="r1"))
    n.append(helper.make_node("Conv", ["r1", cw("sq_w", [3, 6, 1, 1])], ["sq"], name="squeeze"))
    n.append(helper.make_node("Relu", ["sq"], ["rs"], name="rs"))
    n.append(helper.make_node("Conv", ["rs", cw("e1_w", [3, 3, 1, 1])], ["e1"], name="expand1"))
    n.append(helper.make_node("Conv", ["rs", cw("e3_w", [3, 3, 3, 3])], ["e3"], name="expand3", pads=[1, 1, 1, 1]))
    n.append(helper.make_node("Concat", ["e1", "e3"], ["cat"], name="fire_cat", axis=1))
    n.append(helper.make_node("Sum", ["cat", "r1"], ["res"], name="residual"))
    n.append(helper.make_node("GlobalAveragePool", ["res"], ["gap"], name="gap"))
    n.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"))
    n.append(helper.make_node("Gemm", ["flat", cw("fc_w", [5, 6]), cw("fc_b", [5])], ["fc"], name="fc", transB=1))
    n.append(helper.make_node("Softmax", ["fc"], ["y"], name="softmax"))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])] + [
        helper.make_tensor_value_info(t.name, TensorProto.INT64, list(t.dims)) for t in i
    ]
    save("light_constantofshape_weights_op9", n, i, [1, 3, 4, 4], [("y", [1, 5])], opset=9, ir=3, inputs=inputs)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    conv_bn_relu_conv()
    conv_split_concat()
    convtranspose_bn()
    csp_concat_bn_op11()
    depthwise_resize_slice()
    flatten_gemm()
    constants_and_elementwise()
    opset18_split_resize_sizes()
    opset9_upsample_slice()
    fp16_weights()
    external_data()
    unknown_op_and_transpose()
    light_constantofshape_weights()
