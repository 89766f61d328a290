"""What TensorRT's ONNX parser takes: the data behind `edgekd.export.trt_check` (no logic here).

Source: onnx-tensorrt `docs/operators.md` (the support matrix for TensorRT 10.x, up to 10.15) and its
`docs/Changelog.md` (which release added which operator). The baseline is TensorRT 10.3, the version
JetPack 6.1/6.2 ships on Jetson Orin; operators added after it are reported as warnings that name the
release they need. JetPack 5 (TensorRT 8.5) supports less, and is not what this table describes.
"""

from __future__ import annotations

from onnx import TensorProto

BASELINE = "10.3"
#: default-domain opsets the baseline parses (TensorRT 10.0-10.5: opset 9 to 20; 10.15: 9 to 24)
OPSET_MIN, OPSET_MAX = 9, 20

#: "Y" in the support matrix (restrictions are checked separately, in trt_check)
SUPPORTED = frozenset(
    """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization
BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh
CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike
Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
Greater GreaterOrEqual GridSample GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish
Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less
LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RMSNormalization RNN
RoiAlign RotaryEmbedding Round STFT ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink
Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan
Tanh TensorScatter ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split()
)

#: "N" in the support matrix, with the fix to suggest
UNSUPPORTED: dict[str, str] = {
    **dict.fromkeys(
        "SequenceAt SequenceConstruct SequenceEmpty SequenceErase SequenceInsert SequenceLength "
        "SequenceMap SplitToSequence ConcatFromSequence Optional OptionalGetElement "
        "OptionalHasElement".split(),
        "avoid Python lists/tuples of tensors and optional tensors inside forward(); return plain tensors",
    ),
    **dict.fromkeys(
        "StringConcat StringNormalizer StringSplit RegexFullMatch TfIdfVectorizer ImageDecoder".split(),
        "do string and image decoding outside the model; feed the network float tensors",
    ),
    **dict.fromkeys(
        "ConvInteger MatMulInteger QLinearConv QLinearMatMul DynamicQuantizeLinear".split(),
        "export the float model and let TensorRT quantize it (precision: int8), or export"
        " QuantizeLinear/DequantizeLinear pairs instead of integer ops",
    ),
    **dict.fromkeys(
        "BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor".split(),
        "replace bit operations with arithmetic (Mul/Div/Mod) on INT32",
    ),
    **dict.fromkeys(
        "Bernoulli Multinomial".split(),
        "sampling belongs to training; export the model in eval() mode without it",
    ),
    **dict.fromkeys(
        "NegativeLogLikelihoodLoss SoftmaxCrossEntropyLoss".split(),
        "export the model without its loss; the deployed graph should end at the logits",
    ),
    "MaxUnpool": "use Resize (nearest) or ConvTranspose instead of unpooling",
    "MaxRoiPool": "use RoiAlign, which TensorRT supports",
    "Unique": "compute unique values outside the model",
    "Compress": "use Gather with precomputed indices, or compute it outside the model",
    "Det": "compute the determinant outside the model",
    "DFT": "use STFT (TensorRT >= 10.5) or compute the transform outside the model",
    "MelWeightMatrix": "precompute the mel matrix and store it as an initializer",
    "AffineGrid": "precompute the grid, or build it from MatMul/Reshape",
    "Col2Im": "rewrite with Reshape/Transpose, or compute it outside the model",
    "CenterCropPad": "use Slice and Pad",
}

#: supported, but only from a TensorRT release newer than the baseline
NEWER: dict[str, str] = {
    "BlackmanWindow": "10.4",
    "HammingWindow": "10.4",
    "HannWindow": "10.4",
    "STFT": "10.5",
    "Attention": "10.14",
    "RMSNormalization": "10.15",
    "RotaryEmbedding": "10.15",
    "TensorScatter": "10.15",
}

#: supported, with caveats a static check cannot settle
CAVEATS: dict[str, str] = {
    "Loop": "Loop: scan outputs must have a static length and loop-carried values must keep their shape"
    " across iterations; unroll fixed-count loops in forward() if the build fails",
    "If": "If: both branches must produce outputs of the same rank with different names; prefer"
    " torch.where over Python control flow on tensor values",
    "NonZero": "NonZero has a data-dependent output shape: TensorRT runs it, but outputs of such shapes"
    " need an output allocator and are slow; a classifier should not need it",
    "NonMaxSuppression": "NonMaxSuppression has a data-dependent output shape: keep box decoding and"
    " NMS out of the exported classifier, or use TensorRT's EfficientNMS plugin",
}

#: Resize attributes the parser accepts
RESIZE_MODES = frozenset({"nearest", "linear"})
RESIZE_COORDINATES = frozenset(
    {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
)
RESIZE_NEAREST = frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"})

#: operator -> (input index, input name, required): inputs that must be build-time constants;
#: not required = documented as "resolvable to a constant", dynamic since TensorRT 10.7
CONSTANT_INPUTS: dict[str, tuple[int, str, bool]] = {
    **{
        op: (1, "axes", True)
        for op in (
            "ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum"
            " ReduceSumSquare"
        ).split()
    },
    "CumSum": (1, "axis", True),
    "OneHot": (1, "depth", True),
    "Squeeze": (1, "axes", False),
    "Unsqueeze": (1, "axes", False),
}

#: tensor element types TensorRT has no type for at all
NO_TRT_TYPE = frozenset(
    {
        TensorProto.STRING,
        TensorProto.COMPLEX64,
        TensorProto.COMPLEX128,
        TensorProto.INT16,
        TensorProto.UINT16,
        TensorProto.UINT32,
        TensorProto.UINT64,
        TensorProto.UINT4,
        TensorProto.FLOAT8E4M3FNUZ,
        TensorProto.FLOAT8E5M2,
        TensorProto.FLOAT8E5M2FNUZ,
        *([TensorProto.FLOAT8E8M0] if hasattr(TensorProto, "FLOAT8E8M0") else []),
    }
)
#: "quantized types": only through QuantizeLinear/DequantizeLinear from a wider float type
QUANTIZED_TYPES = frozenset(
    {
        TensorProto.INT8,
        TensorProto.INT4,
        TensorProto.FLOAT8E4M3FN,
        *([TensorProto.FLOAT4E2M1] if hasattr(TensorProto, "FLOAT4E2M1") else []),
    }
)
