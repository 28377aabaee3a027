package org.fractureedge.core

import org.json.JSONObject
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * bundle["site_model"]: the site check's file, hash, sizes and where each part starts in the float32 file.
 * [residualScale] is 1/sigma^2 of the directions outside the subspace ("ppca"), 0 for the subspace distance alone
 * ("mahalanobis-pca", bundles exported before the residual design).
 */
data class SiteRecord(
    val file: String,
    val sha256: String,
    val features: Int,
    val components: Int,
    val heldOut: Int,
    val flagBelow: Double,
    val layout: Map<String, Int>,
    val residualScale: Double = 0.0,
) {
    companion object {
        const val METHOD = "mahalanobis-pca"
        const val PPCA_METHOD = "ppca"
        val LAYOUT_KEYS = listOf("mean", "components", "scales", "held_out", "values")

        fun parse(json: JSONObject, source: String): SiteRecord {
            val method = json.getString("method")
            val residualScale = when (method) {
                METHOD -> 0.0
                PPCA_METHOD -> json.optDouble("residual_scale", Double.NaN).also {
                    if (!(it > 0.0) || it.isInfinite()) {
                        throw UnsupportedBundleException("$source: site_model.residual_scale must be > 0, got $it")
                    }
                }
                else -> throw UnsupportedBundleException("$source: site_model.method '$method' is not supported " +
                    "(this app reads $METHOD, $PPCA_METHOD)")
            }
            val layout = json.getJSONObject("layout").let { l -> LAYOUT_KEYS.associateWith { l.getInt(it) } }
            return SiteRecord(json.getString("file"), json.getString("sha256"), json.getInt("features"),
                json.getInt("components"), json.getInt("held_out"), json.getDouble("flag_below"), layout,
                residualScale)
        }
    }
}

/** Whether this image looks like the training data, as fracture_edge.edge_runtime.site_model.SiteModel scores it. */
data class SiteScore(val inDistribution: Double, val outsideTrainingData: Boolean)

/**
 * The site check on the device: the distance of the model's features output, and its conformal p-value against
 * the held-out training images (the score). The distance is the RMS of the whitened principal-component scores;
 * with a [residualScale] ("ppca") it also counts the energy outside the subspace times that scale, as an RMS
 * over all D features. Arithmetic as in Python: float32 projection terms summed per component, squares in double.
 */
class SiteModel(
    private val mean: FloatArray,
    private val components: FloatArray,   // K rows of D, row-major
    private val scales: FloatArray,
    private val heldOut: FloatArray,      // sorted
    val flagBelow: Double,
    private val residualScale: Double = 0.0,
) {
    val features: Int get() = mean.size

    fun distance(values: DoubleArray): Double {
        require(values.size == features) { "the features output has ${values.size} values, the site model $features" }
        val centred = FloatArray(features) { (values[it].toFloat() - mean[it]) }
        var inside = 0.0
        var projected = 0.0                    // squared norm of the projection (for the residual)
        for (k in scales.indices) {
            var z = 0.0
            for (d in 0 until features) z += (centred[d] * components[k * features + d]).toDouble()
            val score = z.toFloat()
            val scaled = score * scales[k]
            inside += scaled.toDouble() * scaled.toDouble()
            projected += score.toDouble() * score.toDouble()
        }
        if (residualScale == 0.0) return Math.sqrt(inside / scales.size)
        var total = 0.0
        for (c in centred) total += c.toDouble() * c.toDouble()
        return Math.sqrt((inside + residualScale * maxOf(total - projected, 0.0)) / features)
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
                record.flagBelow, record.residualScale)
        }
    }
}
