"""The exact ``module.qualname`` globals a pickle may name (data only; ``policy`` judges with it).

Two tables, both exact names (no prefixes, no patterns):

* ``CALLABLE``: may be *called* by the pickle (``REDUCE``, ``INST``, ``OBJ``): torch's own ``weights_only``
  unpickler allowlist (``torch/_weights_only_unpickler.py::_get_allowed_globals``, torch 2.13: tensor and
  parameter rebuilders, storages, dtypes, ``torch.Size``/``device``, ``collections.OrderedDict``/``Counter``,
  ``_codecs.encode``, ``builtins`` set/bytearray/complex) plus value types whose constructor only builds a
  value (``builtins`` containers, ``datetime``, ``pathlib`` paths, numpy's array/scalar reconstructors,
  enums of transformers / accelerate / DeepSpeed, which a pickle rebuilds as ``Enum(value)``).
* ``REBUILT``: classes real checkpoints hold that may only be *rebuilt*: created without running
  ``__init__`` (``NEWOBJ``, or ``copyreg._reconstructor`` with ``object`` as base) and given their
  ``__dict__`` by ``BUILD``. Calling one (``REDUCE``) would run its constructor with arguments from the
  file (``TrainingArguments.__post_init__``, ``PartialState.__init__`` set up processes and read files),
  so that is flagged. These come from the checkpoints this tool supports, checked against real files
  in tests: HF ``training_args.bin`` (TrainingArguments and its enums, AcceleratorConfig, accelerate's
  PartialState), Lightning ``.ckpt`` hyper-parameters (AttributeDict, argparse Namespace, omegaconf),
  DeepSpeed model/optimizer states (LossScaler, fragment_address), torch DCP ``.metadata``
  (``dcp_names``) and whole-module ``torch.save(model)`` of ``torch.nn`` layers.
"""

from __future__ import annotations

from tui.core.pickle_scan.dcp_names import DCP_METADATA_GLOBALS


def _names(table: dict[str, str]) -> frozenset[str]:
    return frozenset(f"{module}.{name}" for module, names in table.items() for name in names.split())


_STORAGE_AND_TENSOR_TYPES = (
    "BFloat16 Bool Byte Char ComplexDouble ComplexFloat Double Float Half Int Long QInt32 QInt8 QUInt2x4 "
    "QUInt4x2 QUInt8 Short"
)
_DENSE = "BFloat16 Bool Byte Char Double Float Half Int Long Short"
_SPARSE = "BFloat16 Byte Char Double Float Half Int Long Short"

# torch._weights_only_unpickler._get_allowed_globals() of torch 2.13, exactly.
TORCH_WEIGHTS_ONLY = _names(
    {
        "_codecs": "encode",
        "builtins": "bytearray complex set",
        "collections": "Counter OrderedDict",
        "torch": " ".join(f"{t}Storage" for t in _STORAGE_AND_TENSOR_TYPES.split())
        + " "
        + " ".join(f"{t}Tensor" for t in _DENSE.split())
        + " Size Tensor device"
        " bfloat16 bits16 bits1x8 bits2x4 bits4x2 bits8 bool complex128 complex32 complex64 float16 float32"
        " float4_e2m1fn_x2 float64 float8_e4m3fn float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz float8_e8m0fnu"
        " int1 int2 int3 int4 int5 int6 int7 int8 int16 int32 int64 uint1 uint2 uint3 uint4 uint5 uint6"
        " uint7 uint8 uint16 uint32 uint64 qint32 qint8 quint2x4 quint4x2 quint8"
        " per_channel_affine per_channel_affine_float_qparams per_channel_symmetric per_tensor_affine"
        " per_tensor_symmetric",
        "torch.cuda": " ".join(f"{t}Storage" for t in (_DENSE + " ComplexDouble ComplexFloat").split())
        + " "
        + " ".join(f"{t}Tensor" for t in _DENSE.split()),
        "torch.cuda.sparse": " ".join(f"{t}Tensor" for t in _SPARSE.split()),
        "torch.sparse": " ".join(f"{t}Tensor" for t in _SPARSE.split()),
        "torch._tensor": "_rebuild_from_type_v2",
        "torch._utils": "_rebuild_device_tensor_from_cpu_tensor _rebuild_device_tensor_from_numpy "
        "_rebuild_meta_tensor_no_storage _rebuild_nested_tensor _rebuild_parameter "
        "_rebuild_parameter_with_state _rebuild_qtensor _rebuild_sparse_tensor _rebuild_tensor "
        "_rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_wrapper_subclass",
        "torch.nn.parameter": "Parameter",
        "torch.serialization": "_get_layout",
        "torch.storage": "TypedStorage UntypedStorage",
    }
)

CALLABLE = TORCH_WEIGHTS_ONLY | _names(
    {
        "builtins": "bool bytes dict float frozenset int list object range slice str tuple",
        "collections": "defaultdict deque",
        "copyreg": "_reconstructor",  # policy checks its base argument
        "datetime": "date datetime time timedelta timezone",
        "decimal": "Decimal",
        "fractions": "Fraction",
        "uuid": "UUID",
        "pathlib": "Path PosixPath PurePath PurePosixPath PureWindowsPath WindowsPath",
        # older torch spellings of the same rebuilders and names
        "torch": "float double half long int short cfloat cdouble chalf uint8 "
        "strided sparse_coo sparse_csr sparse_csc sparse_bsr sparse_bsc _mkldnn jagged "
        "contiguous_format channels_last channels_last_3d preserve_format",
        "torch._tensor": "_rebuild_from_type",
        # numpy arrays and scalars (rng_state.pth, Lightning / HF states holding numpy values)
        "numpy": "dtype ndarray",
        "numpy.core.multiarray": "_reconstruct scalar",
        "numpy._core.multiarray": "_reconstruct scalar",
        "numpy.core.numeric": "_frombuffer",
        "numpy._core.numeric": "_frombuffer",
        "numpy.random._pickle": "__randomstate_ctor __bit_generator_ctor __generator_ctor",
        "numpy.dtypes": "BoolDType Int8DType UInt8DType Int16DType UInt16DType Int32DType UInt32DType "
        "Int64DType UInt64DType Float16DType Float32DType Float64DType LongDType ULongDType "
        "LongLongDType ULongLongDType ByteDType UByteDType ShortDType UShortDType IntDType UIntDType "
        "HalfDType FloatDType DoubleDType Complex64DType Complex128DType",
        # enums, rebuilt as Enum(value)
        "transformers.trainer_utils": "IntervalStrategy SaveStrategy HubStrategy HPSearchBackend "
        "SchedulerType FSDPOption EvaluationStrategy",
        "transformers.training_args": "OptimizerNames ParallelMode",
        "transformers.debug_utils": "DebugOption",
        "transformers.utils.generic": "ExplicitEnum PaddingStrategy TensorType",
        "accelerate.utils.dataclasses": "DDPCommunicationHookType DistributedType "
        "SageMakerDistributedType FP8BackendType ComputeEnvironment DynamoBackend LoggerType PrecisionType "
        "RNGType CustomDtype",
        "deepspeed.runtime.zero.config": "ZeroStageEnum",
        "deepspeed.utils.tensor_fragment": "fragment_address",  # a namedtuple
        "torch.distributed.checkpoint.metadata": "_MEM_FORMAT_ENCODING",  # an enum of DCP .metadata
    }
)

_TORCH_NN_MODULES = {
    "torch.nn.modules.activation": "CELU ELU GELU GLU Hardshrink Hardsigmoid Hardswish Hardtanh LeakyReLU "
    "LogSigmoid LogSoftmax Mish MultiheadAttention PReLU RReLU ReLU ReLU6 SELU SiLU Sigmoid Softmax "
    "Softmax2d Softmin Softplus Softshrink Softsign Tanh Tanhshrink Threshold",
    "torch.nn.modules.adaptive": "AdaptiveLogSoftmaxWithLoss",
    "torch.nn.modules.batchnorm": "BatchNorm1d BatchNorm2d BatchNorm3d SyncBatchNorm",
    "torch.nn.modules.channelshuffle": "ChannelShuffle",
    "torch.nn.modules.container": "ModuleDict ModuleList ParameterDict ParameterList Sequential",
    "torch.nn.modules.conv": "Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d",
    "torch.nn.modules.distance": "CosineSimilarity PairwiseDistance",
    "torch.nn.modules.dropout": "AlphaDropout Dropout Dropout1d Dropout2d Dropout3d FeatureAlphaDropout",
    "torch.nn.modules.flatten": "Flatten Unflatten",
    "torch.nn.modules.fold": "Fold Unfold",
    "torch.nn.modules.instancenorm": "InstanceNorm1d InstanceNorm2d InstanceNorm3d",
    "torch.nn.modules.linear": "Bilinear Identity Linear NonDynamicallyQuantizableLinear",
    "torch.nn.modules.loss": "BCELoss BCEWithLogitsLoss CTCLoss CosineEmbeddingLoss CrossEntropyLoss "
    "GaussianNLLLoss HingeEmbeddingLoss HuberLoss KLDivLoss L1Loss MSELoss MarginRankingLoss "
    "MultiLabelMarginLoss MultiLabelSoftMarginLoss MultiMarginLoss NLLLoss PoissonNLLLoss SmoothL1Loss "
    "SoftMarginLoss TripletMarginLoss",
    "torch.nn.modules.module": "Module",
    "torch.nn.modules.normalization": "CrossMapLRN2d GroupNorm LayerNorm LocalResponseNorm RMSNorm",
    "torch.nn.modules.padding": "CircularPad1d CircularPad2d CircularPad3d ConstantPad1d ConstantPad2d "
    "ConstantPad3d ReflectionPad1d ReflectionPad2d ReflectionPad3d ReplicationPad1d ReplicationPad2d "
    "ReplicationPad3d ZeroPad1d ZeroPad2d ZeroPad3d",
    "torch.nn.modules.pixelshuffle": "PixelShuffle PixelUnshuffle",
    "torch.nn.modules.pooling": "AdaptiveAvgPool1d AdaptiveAvgPool2d AdaptiveAvgPool3d AdaptiveMaxPool1d "
    "AdaptiveMaxPool2d AdaptiveMaxPool3d AvgPool1d AvgPool2d AvgPool3d FractionalMaxPool2d "
    "FractionalMaxPool3d LPPool1d LPPool2d LPPool3d MaxPool1d MaxPool2d MaxPool3d MaxUnpool1d "
    "MaxUnpool2d MaxUnpool3d",
    "torch.nn.modules.rnn": "GRU GRUCell LSTM LSTMCell RNN RNNCell",
    "torch.nn.modules.sparse": "Embedding EmbeddingBag",
    "torch.nn.modules.transformer": "Transformer TransformerDecoder TransformerDecoderLayer "
    "TransformerEncoder TransformerEncoderLayer",
    "torch.nn.modules.upsampling": "Upsample UpsamplingBilinear2d UpsamplingNearest2d",
}

REBUILT = (
    _names(
        {
            "argparse": "Namespace",
            "transformers.training_args": "TrainingArguments",
            "transformers.training_args_seq2seq": "Seq2SeqTrainingArguments",
            "transformers.trainer_pt_utils": "AcceleratorConfig",
            "transformers.generation.configuration_utils": "GenerationConfig",
            "accelerate.state": "PartialState AcceleratorState GradientState",
            "accelerate.utils.dataclasses": "DeepSpeedPlugin DataLoaderConfiguration ProjectConfiguration "
            "GradientAccumulationPlugin",
            "deepspeed.runtime.fp16.loss_scaler": "LossScaler DynamicLossScaler",
            "lightning.fabric.utilities.data": "AttributeDict",
            "lightning_fabric.utilities.data": "AttributeDict",
            "lightning.pytorch.utilities.parsing": "AttributeDict",
            "pytorch_lightning.utilities.parsing": "AttributeDict",
            "omegaconf.dictconfig": "DictConfig",
            "omegaconf.listconfig": "ListConfig",
            "omegaconf.base": "ContainerMetadata Metadata",
            "omegaconf.nodes": "AnyNode StringNode IntegerNode FloatNode BooleanNode EnumNode BytesNode "
            "PathNode",
            "typing": "Any",
        }
    )
    | _names(_TORCH_NN_MODULES)
    | DCP_METADATA_GLOBALS
)
