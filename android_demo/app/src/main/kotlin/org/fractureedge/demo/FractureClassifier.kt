package org.fractureedge.demo

import android.content.res.AssetManager
import android.os.SystemClock
import org.fractureedge.core.ArtifactRecord
import org.fractureedge.core.Decision
import org.fractureedge.core.FractureBundle
import org.fractureedge.core.FractureCore
import org.fractureedge.core.ModelMismatchException
import org.fractureedge.core.SiteModel
import org.fractureedge.core.SiteRecord
import org.fractureedge.core.SiteScore
import org.fractureedge.core.TensorCodec
import org.fractureedge.core.TensorSpec
import org.fractureedge.core.TensorType
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.Tensor
import java.io.Closeable
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.security.MessageDigest

/** A decision, the site check (null without a site model) and how long each stage took on this device. */
data class Classification(
    val decision: Decision,
    val preprocessMillis: Double,
    val inferenceMillis: Double,
    val site: SiteScore? = null,
)

/**
 * The one class that talks to LiteRT: loads bundle.json and the model it chose (FractureBundle.artifact,
 * e.g. model_int8.tflite) from the app's assets, checks that they belong together, and runs one image at a time.
 */
class FractureClassifier private constructor(
    private val interpreter: Interpreter,
    val core: FractureCore,
    private val probabilityIndex: Int,
    private val features: Pair<Int, TensorSpec>?,   // (output index, spec) read by an adapted head or the site check
    private val site: SiteModel?,
) : Closeable {

    /** Decoded image -> decision; preprocessing and inference are timed separately. */
    fun classify(image: LoadedImage, thresholdName: String): Classification {
        val start = SystemClock.elapsedRealtimeNanos()
        val input = core.prepare(image.pixels, image.source, image.exifOrientation)
        val prepared = SystemClock.elapsedRealtimeNanos()
        val output = ByteBuffer.allocateDirect(core.output.elements * core.output.type.bytes)
            .order(ByteOrder.nativeOrder())
        val outputs = mutableMapOf<Int, Any>(probabilityIndex to output)
        val featureOut = features?.let { (index, spec) ->
            val buffer = ByteBuffer.allocateDirect(spec.elements * spec.type.bytes).order(ByteOrder.nativeOrder())
            outputs[index] = buffer
            buffer to spec
        }
        interpreter.runForMultipleInputsOutputs(arrayOf<Any>(input), outputs)
        val done = SystemClock.elapsedRealtimeNanos()
        val featureValues = featureOut?.let { (buffer, spec) -> TensorCodec.readVector(buffer, spec) }
        val probability = core.probability(TensorCodec.readProbability(output, core.output), featureValues)
        val decision = core.decide(probability, thresholdName)
        val siteScore = site?.let { model -> featureValues?.let(model::score) }
        return Classification(decision, (prepared - start) / 1e6, (done - prepared) / 1e6, siteScore)
    }

    override fun close() = interpreter.close()

    companion object {
        const val BUNDLE_ASSET = "bundle.json"

        /** Load bundle.json and the model it chose; throws a message the UI can show when one is missing or they disagree. */
        fun fromAssets(assets: AssetManager, threads: Int = 4): FractureClassifier {
            val bundle = FractureBundle.parse(readAsset(assets, BUNDLE_ASSET).toString(Charsets.UTF_8), BUNDLE_ASSET)
            val artifact = bundle.requireArtifact()
            val modelBytes = readAsset(assets, artifact.file)
            checkSha256(artifact, modelBytes)
            val model = ByteBuffer.allocateDirect(modelBytes.size).order(ByteOrder.nativeOrder())
            model.put(modelBytes).rewind()
            val interpreter = Interpreter(model, Interpreter.Options().setNumThreads(threads))
            try {
                val index = probabilityOutput(interpreter)
                val core = FractureCore(bundle, spec(interpreter.getInputTensor(0)), spec(interpreter.getOutputTensor(index)))
                val site = bundle.site?.let { loadSite(assets, it) }
                val size = bundle.head?.weights?.size ?: site?.features
                val features = size?.let { featuresOutput(interpreter, index, it, artifact.file) }
                return FractureClassifier(interpreter, core, index, features, site)
            } catch (exc: RuntimeException) {
                interpreter.close()
                throw exc
            }
        }

        /** The site check's model (bundle site_model + its asset, hash checked). */
        private fun loadSite(assets: AssetManager, record: SiteRecord): SiteModel {
            val bytes = readAsset(assets, record.file)
            val actual = sha256(bytes)
            if (!actual.equals(record.sha256, ignoreCase = true)) {
                throw ModelMismatchException("${record.file} is not the site model $BUNDLE_ASSET describes: copy both " +
                    "from the same export")
            }
            return SiteModel.fromBytes(record, bytes)
        }

        /** The probability: the output with one value per image (exports add extra outputs, e.g. a heatmap). */
        private fun probabilityOutput(interpreter: Interpreter): Int =
            (0 until interpreter.outputTensorCount).firstOrNull { interpreter.getOutputTensor(it).numElements() == 1 } ?: 0

        /** The model file must be the one bundle.json describes (same run, same export). */
        private fun checkSha256(artifact: ArtifactRecord, modelBytes: ByteArray) {
            val actual = sha256(modelBytes)
            if (!actual.equals(artifact.sha256, ignoreCase = true)) {
                throw ModelMismatchException("${artifact.file} (sha256 ${actual.take(12)}...) is not the file " +
                    "$BUNDLE_ASSET describes (${artifact.sha256.take(12)}...): copy both from the same run")
            }
        }

        /** The adapted head's input: the other output with one value per weight (found by its size, as in Python). */
        private fun featuresOutput(
            interpreter: Interpreter, probability: Int, size: Int, file: String,
        ): Pair<Int, TensorSpec> {
            val index = (0 until interpreter.outputTensorCount).firstOrNull {
                it != probability && interpreter.getOutputTensor(it).numElements() == size
            } ?: throw ModelMismatchException("$BUNDLE_ASSET reads $size features (adapted head or site check), but " +
                "$file has no such output: re-export the run (and adapt again)")
            return index to spec(interpreter.getOutputTensor(index))
        }

        private fun spec(tensor: Tensor): TensorSpec {
            val type = when (tensor.dataType()) {
                DataType.UINT8 -> TensorType.UINT8
                DataType.INT8 -> TensorType.INT8
                DataType.FLOAT32 -> TensorType.FLOAT32
                else -> throw ModelMismatchException("tensor type ${tensor.dataType()} is not supported")
            }
            val quantization = tensor.quantizationParams()
            return TensorSpec(type, tensor.shape().toList(), quantization.scale.toDouble(), quantization.zeroPoint)
        }

        private fun readAsset(assets: AssetManager, name: String): ByteArray =
            try {
                assets.open(name).use { it.readBytes() }
            } catch (exc: java.io.IOException) {
                throw ModelMismatchException("asset $name is missing: run `fracture-edge export RUN " +
                    "--android-assets android_demo/app/src/main/assets` and rebuild")
            }

        private fun sha256(bytes: ByteArray): String =
            MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }
    }
}
