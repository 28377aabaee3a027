package org.fractureedge.core

import org.json.JSONObject
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** bundle["site_model"]: the site check's file, hash, sizes and where each part starts in the float32 file. */
data class SiteRecord(
    val file: String,
    val sha256: String,
    val features: Int,
    val components: Int,
    val heldOut: Int,
    val flagBelow: Double,
    val layout: Map<String, Int>,
) {
    companion object {
        const val METHOD = "mahalanobis-pca"
        val LAYOUT_KEYS = listOf("mean", "components", "scales", "held_out", "values")

        fun parse(json: JSONObject, source: String): SiteRecord {
            val method = json.getString("method")
            if (method != METHOD) throw UnsupportedBundleException("$source: site_model.method '$method' is not supported")
            val layout = json.getJSONObject("layout").let { l -> LAYOUT_KEYS.associateWith { l.getInt(it) } }
            return SiteRecord(json.getString("file"), json.getString("sha256"), json.getInt("features"),
                json.getInt("components"), json.getInt("held_out"), json.getDouble("flag_below"), layout)
        }
    }
}

/** Whether this image looks like the training data, as fracture_edge.edge_runtime.site_model.SiteModel scores it. */
data class SiteScore(val inDistribution: Double, val outsideTrainingData: Boolean)

/**
 * The site check on the device: the RMS of the whitened principal-component scores of the model's features
 * output (the distance), and its conformal p-value against the held-out training images (the score).
 * Arithmetic as in Python: float32 projection terms summed in float32 per component, squares in double.
 */
class SiteModel(
    private val mean: FloatArray,
    private val components: FloatArray,   // K rows of D, row-major
    private val scales: FloatArray,
    private val heldOut: FloatArray,      // sorted
    val flagBelow: Double,
) {
    val features: Int get() = mean.size

    fun distance(values: DoubleArray): Double {
        require(values.size == features) { "the features output has ${values.size} values, the site model $features" }
        val centred = FloatArray(features) { (values[it].toFloat() - mean[it]) }
        var sum = 0.0
        for (k in scales.indices) {
            var z = 0.0
            for (d in 0 until features) z += (centred[d] * components[k * features + d]).toDouble()
            val scaled = z.toFloat() * scales[k]
            sum += scaled.toDouble() * scaled.toDouble()
        }
        return Math.sqrt(sum / scales.size)
    }

    /** (1 + held-out images at least as far) / (1 + held-out images); flagged below [flagBelow]. */
    fun score(values: DoubleArray): SiteScore {
        val d = distance(values)
        var lo = 0
        var hi = heldOut.size
        while (lo < hi) {                      // first held-out distance >= d (numpy searchsorted, side left)
            val mid = (lo + hi) ushr 1
            if (heldOut[mid].toDouble() < d) lo = mid + 1 else hi = mid
        }
        val p = (1.0 + (heldOut.size - lo)) / (1.0 + heldOut.size)
        return SiteScore(p, p < flagBelow)
    }

    companion object {
        /** The model from its little-endian float32 file and its record; refuses a file of another size. */
        fun fromBytes(record: SiteRecord, bytes: ByteArray): SiteModel {
            val values = FloatArray(bytes.size / 4)
            ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(values)
            val l = record.layout
            val d = record.features
            val k = record.components
            if (bytes.size % 4 != 0 || values.size != l["values"] || l["components"] != d ||
                l["scales"] != d + k * d || l["held_out"] != d + k * d + k) {
                throw ModelMismatchException("${record.file}: ${values.size} values do not fit the bundle's site_model " +
                    "layout ${record.layout}")
            }
            return SiteModel(values.copyOfRange(0, d), values.copyOfRange(d, d + k * d),
                values.copyOfRange(d + k * d, d + k * d + k), values.copyOfRange(d + k * d + k, values.size),
                record.flagBelow)
        }
    }
}
