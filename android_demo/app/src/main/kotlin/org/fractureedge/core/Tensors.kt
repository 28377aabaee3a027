package org.fractureedge.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/** Tensor element types the app can feed or read. */
enum class TensorType(val bytes: Int, val min: Double, val max: Double) {
    UINT8(1, 0.0, 255.0),
    INT8(1, -128.0, 127.0),
    FLOAT32(4, -Double.MAX_VALUE, Double.MAX_VALUE);

    val pythonName: String get() = name.lowercase()
}

/** What the interpreter reports for a tensor: type, shape, scale (0 = not quantized) and zero point. */
data class TensorSpec(val type: TensorType, val shape: List<Int>, val scale: Double, val zeroPoint: Int) {
    val elements: Int get() = shape.fold(1) { acc, d -> acc * d }
}

/**
 * Quantize / dequantize exactly like fracture_edge.edge_runtime.backends.quantize / dequantize:
 * float tensors take the raw values; integer tensors take clip(rint(x / scale + zero_point))
 * (numpy rounds halves to even, as Math.rint does) when a scale is set, plain clip otherwise.
 */
object TensorCodec {
    fun quantize(value: Double, spec: TensorSpec): Double {
        // A FLOAT32 input (tflite-int8-dynamic, -fp16, -fp32) gets the raw pixel 0..255 as a float, no /255 and
        // no normalisation (that is in the graph): backends.quantize feeds a float model values.astype(float32).
        if (spec.type == TensorType.FLOAT32) return value.toFloat().toDouble()
        val scaled = if (spec.scale != 0.0) Math.rint(value / spec.scale + spec.zeroPoint) else value
        return scaled.coerceIn(spec.type.min, spec.type.max)
    }

    fun dequantize(raw: Double, spec: TensorSpec): Double =
        if (spec.type != TensorType.FLOAT32 && spec.scale != 0.0) (raw - spec.zeroPoint) * spec.scale else raw

    /** Model input pixels (0..255, one per element) -> a direct buffer in native order for the interpreter. */
    fun pack(pixels: IntArray, spec: TensorSpec): ByteBuffer {
        require(pixels.size == spec.elements) {
            "model input has ${spec.elements} elements (shape ${spec.shape}), preprocessing gave ${pixels.size}"
        }
        val buffer = ByteBuffer.allocateDirect(pixels.size * spec.type.bytes).order(ByteOrder.nativeOrder())
        for (p in pixels) {
            val q = quantize(p.toDouble(), spec)
            when (spec.type) {
                TensorType.FLOAT32 -> buffer.putFloat(q.toFloat())
                else -> buffer.put(q.toInt().toByte())
            }
        }
        buffer.rewind()
        return buffer
    }

    /** Every element of an output buffer (native order), dequantized: e.g. the pooled features. */
    fun readVector(output: ByteBuffer, spec: TensorSpec): DoubleArray {
        val ordered = output.order(ByteOrder.nativeOrder())
        return DoubleArray(spec.elements) { i ->
            val raw = when (spec.type) {
                TensorType.UINT8 -> (ordered.get(i).toInt() and 0xFF).toDouble()
                TensorType.INT8 -> ordered.get(i).toDouble()
                TensorType.FLOAT32 -> ordered.getFloat(i * 4).toDouble()
            }
            dequantize(raw, spec)
        }
    }

    /** The first element of an output buffer (native order), dequantized: P(fractured). */
    fun readProbability(output: ByteBuffer, spec: TensorSpec): Double {
        val raw = when (spec.type) {
            TensorType.UINT8 -> (output.get(0).toInt() and 0xFF).toDouble()
            TensorType.INT8 -> output.get(0).toDouble()
            TensorType.FLOAT32 -> output.order(ByteOrder.nativeOrder()).getFloat(0).toDouble()
        }
        return dequantize(raw, spec)
    }
}
