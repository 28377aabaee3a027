package org.fractureedge.core

/** One answer for one image. */
data class Decision(
    val label: String,
    val positive: Boolean,
    val probability: Double,
    val thresholdName: String,
    val threshold: Double,
)

/** The model file or its tensors do not match what bundle.json promises. */
class ModelMismatchException(message: String) : IllegalStateException(message)

/**
 * Everything between decoded pixels and the answer, with no Android dependency: the app supplies
 * pixels and the interpreter's tensor specs, the bundle supplies every preprocessing decision.
 */
class FractureCore(val bundle: FractureBundle, val input: TensorSpec, val output: TensorSpec) {
    /** The model file this core was built for (bundle.json's chosen artifact). */
    val artifact: ArtifactRecord = bundle.requireArtifact()

    init {
        val s = bundle.input.size
        val expected = listOf(1, s, s, bundle.input.channels)
        check(input.shape == expected) { "model input shape ${input.shape}, bundle.json says $expected" }
        check(output.elements == 1) { "model output shape ${output.shape}, expected one probability" }
        artifact.input?.let { checkRecorded("input", it, input) }
        artifact.output?.let { checkRecorded("output", it, output) }
    }

    /** Decoded image -> the interpreter's input buffer (orientation, gray, resize, round, repeat, quantize). */
    fun prepare(image: ArgbImage, source: SourceFormat, exifOrientation: Int = 1): java.nio.ByteBuffer {
        checkSource(source)
        return TensorCodec.pack(modelPixels(GrayConversion.toGray(image, source.grayscale, exifOrientation),
            bundle.input), input)
    }

    /**
     * The probability to report: with an adapted head in bundle.json, sigmoid(features . w + b) from the
     * model's features output (the model's own probability belongs to the base head); else the model's own.
     */
    fun probability(modelProbability: Double, features: DoubleArray?): Double {
        val head = bundle.head ?: return modelProbability
        return head.probability(features ?: throw ModelMismatchException(
            "bundle.json has an adapted head, but the model gave no ${head.output} output"))
    }

    /** Raw model output -> decision at the named threshold (probability >= threshold is positive). */
    fun decide(probability: Double, thresholdName: String): Decision {
        val threshold = bundle.threshold(thresholdName)
        val positive = probability >= threshold
        return Decision(if (positive) bundle.positiveLabel else bundle.negativeLabel, positive,
            probability, thresholdName, threshold)
    }

    /** dtype, scale, zero point (float tensors: float32, 0, 0) and, when recorded, shape must be what export saw. */
    private fun checkRecorded(which: String, recorded: RecordedQuantization, actual: TensorSpec) {
        val same = recorded.dtype == actual.type.pythonName && recorded.zeroPoint == actual.zeroPoint &&
            recorded.scale.toFloat() == actual.scale.toFloat()
        check(same) {
            "model $which tensor is ${actual.type.pythonName} scale=${actual.scale} zero_point=${actual.zeroPoint}, " +
                "bundle.json recorded ${recorded.dtype} scale=${recorded.scale} zero_point=${recorded.zeroPoint}"
        }
        check(recorded.shape == null || recorded.shape == actual.shape) {
            "model $which shape ${actual.shape}, bundle.json recorded ${recorded.shape}"
        }
    }

    private inline fun check(condition: Boolean, message: () -> String) {
        if (!condition) throw ModelMismatchException("${artifact.file} does not match bundle.json: ${message()}")
    }

    companion object {
        /** Gray image -> model pixels 0..255, size x size x channels, row-major NHWC (batch of one). */
        fun modelPixels(gray: GrayImage, contract: InputContract): IntArray {
            val resized = TriangleResize.resize(gray, contract.size)
            val pixels = IntArray(resized.size * contract.channels)
            for (i in resized.indices) {
                val value = TriangleResize.roundPixel(resized[i])
                for (c in 0 until contract.channels) pixels[i * contract.channels + c] = value
            }
            return pixels
        }

        /** Refuse images whose stored values the Android decoder cannot reproduce as Python reads them. */
        fun checkSource(source: SourceFormat) {
            if (source.bitDepth > 8) {
                throw IllegalArgumentException("${source.bitDepth}-bit ${source.container.uppercase()} images are " +
                    "not supported: Android decodes them to 8 bits, fracture-edge scales them by detector bit " +
                    "depth. Convert to 8-bit or use `fracture-edge predict`.")
            }
        }
    }
}
