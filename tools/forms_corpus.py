#!/usr/bin/env python3
"""Writes tools/forms.kiln, the corpus of generic layers whose sized kernel
forms tools/gen_forms.c compiles at build time (runtime/cpu_code.h, prebuilt
forms; docs/cpu-backend.md "Prebuilt forms"):

    /usr/bin/python3 tools/forms_corpus.py > tools/forms.kiln

The corpus is a grid, not any model's layers: every layer KIND of the common
convolutional and transformer networks, with every EPILOGUE FAMILY, at a
spread of sizes wide enough to reach each size-dependent variant of a form
(short products K < 128 and long ones, swapped tiles on small planes, row
panels for wide short products, one image and several), all f32:

- convolutions (NCHW) on the planes of an image pyramid from 224 (112 .. 7):
  1x1 stride 1 (pointwise), 1x1 stride 2 (downsampling), 3x3 stride 1 and 2,
  the stems (3 channels: 3x3 and 7x7 at stride 2); channels 16 .. 1024;
  epilogues: none, bias, bias + relu, bias + relu6 (written clamp, and
  minimum(maximum(..)) as ONNX's Clip imports), bias + residual, bias +
  residual + relu;
- depthwise convolutions (the direct form, keyed by its plane: sized direct
  units), 3x3 at stride 1 and 2 on the same planes (5x5 too at batch 1), with
  the same epilogues but the residual ones, and 3x3 stride-2 max pools;
- classifier heads ([N, D] @ [D, C] of one or two rows: the thin product),
  with none, bias, bias + relu;
- transformer products ([B, T, D] @ [D, F], widths 32 .. 1536): linear with
  the same epilogues (gelu for relu6), the q/k/v projections split into heads
  (reshape + transpose) for head sizes 32, 64 and 128, the attention scores
  scaled by 1/sqrt(head size), the context merged back (transpose +
  reshape); sequence lengths 16 .. 128, model widths 256 .. 1024, batch 1 and 2.

Parameters named w* or b* are bound constants (a model's weights), the
others inputs (gen_forms.c).  A model whose layers are of these kinds gets
their units from the table whatever its sizes (a form's code reads every
size from the kernel's values); other kinds compile as before.
"""

import itertools

PLANES = [112, 56, 28, 14, 7]
CHANNELS = [16, 64, 256, 1024]
BATCHES = [1, 2]
EPILOGUES = ["none", "bias", "relu", "clamp", "minmax", "residual", "residual_relu"]


class Graph:
    def __init__(self, name):
        self.name, self.params, self.body, self.results, self.n = name, [], [], [], 0

    def param(self, prefix, shape):
        name = f"{prefix}{self.n}"
        self.params.append(f"{name}: f32[{', '.join(map(str, shape))}]")
        return name

    def result(self, expr, shape):
        name = f"y{self.n}"
        self.body.append(f"    {name} = {expr}")
        self.results.append((name, shape))
        self.n += 1

    def text(self):
        res = ", ".join(f"f32[{', '.join(map(str, s))}]" for _, s in self.results)
        out = [f"graph {self.name}({', '.join(self.params)}) -> ({res}) {{"] + self.body
        out.append(f"    return {', '.join(n for n, _ in self.results)}")
        return "\n".join(out) + "\n}\n"


def epilogue(g, core, epi, shape, has_bias_arg):
    """The layer's expression: core (with its bias when has_bias_arg) and the epilogue."""
    if epi in ("none", "bias"):
        return core
    if epi == "relu":
        return f"relu({core})"
    if epi == "clamp":
        return f"clamp({core}, 0.0, 6.0)"
    if epi == "minmax":
        return f"minimum(maximum({core}, 0.0), 6.0)"
    if epi == "gelu":
        return f"gelu({core})"
    r = g.param("r", shape)
    return f"relu({core} + {r})" if epi == "residual_relu" else f"{core} + {r}"


def conv_layer(g, n, cin, cout, h, k, s, epi):
    p = k // 2
    o = (h + 2 * p - k) // s + 1
    x = g.param("x", [n, cin, h, h])
    w = g.param("w", [cout, cin, k, k])
    bias = ""
    if epi != "none":
        bias = ", " + g.param("b", [cout])
    core = f"conv2d({x}, {w}{bias}, stride=[{s}, {s}], padding=[[{p}, {p}], [{p}, {p}]])"
    shape = [n, cout, o, o]
    g.result(epilogue(g, core, epi, shape, epi != "none"), shape)


def conv_graphs():
    out = []
    for n, epi in itertools.product(BATCHES, EPILOGUES):
        g = Graph(f"conv_b{n}_{epi}")
        for plane, cin, cout in itertools.product(PLANES, CHANNELS, CHANNELS):
            if cin * cout * plane * plane > 2**26:  # a grid point no network has
                continue
            conv_layer(g, n, cin, cout, plane, 1, 1, epi)  # pointwise
            # downsampling, to 7x7 too: a swapped product of <= 128 pixels
            # runs its epilogue over whole rows (plane_rows), a form of its own
            conv_layer(g, n, cin, cout, plane * 2, 1, 2, epi)
            if cin <= 256 and cout <= 256:
                conv_layer(g, n, cin, cout, plane, 3, 1, epi)
                conv_layer(g, n, cin, cout, plane * 2, 3, 2, epi)
            # 3x3 layers whose channels are not whole vectors (72) on the
            # planes whose rows of 14 and 7 pixels are read in place
            # (codegen/llvm.c conv_taps) when they are: the gathered forms
            if cin <= 256 and cout == CHANNELS[0] and plane <= 14:
                conv_layer(g, n, cin, 72, plane, 3, 1, epi)
                conv_layer(g, n, cin, 72, plane * 2, 3, 2, epi)
        # long-row products on 14x14 planes (K and M >= 512, over the
        # grid's size bound): swapped at one image, they run row blocks of
        # one panel (codegen/llvm.c swap_one_panel), a form of their own;
        # at 7x7 the grid's 1024-channel layers have it
        conv_layer(g, n, 1024, 512, 14, 1, 1, epi)
        conv_layer(g, n, 512, 1024, 28, 1, 2, epi)
        for cout in (16, 32, 64):  # stems
            conv_layer(g, n, 3, cout, 224, 3, 2, epi)
            conv_layer(g, n, 3, cout, 224, 7, 2, epi)
        out.append(g)
    return out


def depthwise_layer(g, n, c, h, k, s, epi):
    p = k // 2
    o = (h + 2 * p - k) // s + 1
    x = g.param("x", [n, c, h, h])
    w = g.param("w", [c, 1, k, k])
    bias = "" if epi == "none" else ", " + g.param("b", [c])
    core = f"conv2d({x}, {w}{bias}, stride=[{s}, {s}], padding=[[{p}, {p}], [{p}, {p}]], groups={c})"
    shape = [n, c, o, o]
    g.result(epilogue(g, core, epi, shape, epi != "none"), shape)


def direct_graphs():
    """Depthwise 3x3 and 5x5 convolutions at stride 1 and 2 and 3x3 max pools on the
    pyramid's planes: the direct form keys its unit by the plane's geometry (not its
    channels or batch), so each plane is one form per epilogue."""
    out = []
    for n in BATCHES:
        for epi in ["none", "bias", "relu", "clamp", "minmax"]:
            g = Graph(f"depthwise_b{n}_{epi}")
            for plane in PLANES:
                for k in (3, 5) if n == 1 else (3,):
                    depthwise_layer(g, n, 32, plane, k, 1, epi)
                    depthwise_layer(g, n, 32, plane * 2, k, 2, epi)
            out.append(g)
        g = Graph(f"pool_b{n}")
        for plane in PLANES:
            x = g.param("x", [n, 32, plane * 2, plane * 2])
            g.result(f"maxpool2d({x}, 3, stride=2, padding=1)", [n, 32, plane, plane])
        out.append(g)
    return out


def linear(g, lead, d, f, epi):
    x = g.param("x", lead + [d])
    w = g.param("w", [d, f])
    core = f"{x} @ {w}" + ("" if epi == "none" else " + " + g.param("b", [f]))
    shape = lead + [f]
    g.result(epilogue(g, core, epi, shape, epi != "none"), shape)


def attention(g, b, t, d, hd):
    h = d // hd
    scale = 1.0 / hd**0.5
    x = g.param("x", [b, t, d])
    w, bias = g.param("w", [d, d]), g.param("b", [d])
    g.result(f"transpose(reshape({x} @ {w} + {bias}, [-1, {t}, {h}, {hd}]), [0, 2, 1, 3])", [b, h, t, hd])
    q, k = g.param("q", [b, h, t, hd]), g.param("k", [b, h, t, hd])
    g.result(f"{q} @ transpose({k}, [0, 1, 3, 2]) * {scale!r}", [b, h, t, t])
    p, v = g.param("p", [b, h, t, t]), g.param("v", [b, h, t, hd])
    g.result(f"reshape(transpose({p} @ {v}, [0, 2, 1, 3]), [-1, {t}, {d}])", [b, t, d])


def classifier_graphs():
    """Classifier heads, [N, D] @ [D, C] of one or two rows: the thin product
    (GEMV), sized whatever D and C."""
    g = Graph("classifier")
    for n, epi in itertools.product(BATCHES, ["none", "bias", "relu"]):
        linear(g, [n], 1024, 1000, epi)
    return [g]


def transformer_graphs():
    out = []
    for b in BATCHES:
        g = Graph(f"transformer_b{b}")
        for t, d, f in itertools.product([16, 128], [32, 96, 384, 1536], [32, 96, 384, 1536]):
            for epi in ["none", "bias", "relu", "gelu", "residual"]:
                linear(g, [b, t], d, f, epi)
        for t, d in itertools.product([64, 128], [256, 384, 512, 768, 1024]):
            for hd in (32, 64, 128):
                if d % hd == 0:
                    attention(g, b, t, d, hd)
        out.append(g)
    return out


def main():
    print("# forms.kiln - the corpus of generic layers whose sized kernel forms are")
    print("# compiled at build time (tools/gen_forms.c).  Generated by")
    print("# tools/forms_corpus.py (the grid and its principle are there): do not edit.")
    for g in conv_graphs() + direct_graphs() + classifier_graphs() + transformer_graphs():
        print(g.text())


if __name__ == "__main__":
    main()
