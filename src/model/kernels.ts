// The kernels the model calls, all from the Zig library through src/ffi.ts.
export {
  adamwUpdate, attentionBackward, attentionForward, encoderBackward, encoderForward, geluBackward, geluForward, gradNormSquared,
  layernormBackward, layernormForward, matmulBackwardInput, matmulBackwardWeight, matmulForward, residualBackward, residualForward,
  softmaxCrossEntropyBackward, softmaxCrossEntropyForward,
} from "../ffi.ts";
