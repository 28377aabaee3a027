package org.fractureedge.core

import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject

/** bundle.json says something this app cannot honour; the message names the key and the reason. */
class UnsupportedBundleException(message: String) : IllegalArgumentException(message)

/** The model input as bundle.json describes it (only the values this core can reproduce exactly). */
data class InputContract(val size: Int, val channels: Int)

/**
 * dtype, scale and zero point (scale 0, zero point 0: a float tensor) of one tensor, and its shape when
 * recorded, as `fracture-edge export` read them from the interpreter.
 */
data class RecordedQuantization(val dtype: String, val scale: Double, val zeroPoint: Int, val shape: List<Int>? = null)

/** bundle["artifacts"][format] of the artifact the app loads: its file, hash and recorded quantization. */
data class ArtifactRecord(
    val format: String,
    val file: String,
    val sha256: String,
    val input: RecordedQuantization?,
    val output: RecordedQuantization?,
)

/**
 * bundle["adapted_head"] (`fracture-edge adapt`): P(fractured) = sigmoid(features . weights + bias), where
 * features is the model's extra output named [output] (one value per weight), as the Python runtime does
 * (fracture_edge.edge_runtime.adapt.head.AdaptedHead).
 */
class AdaptedHead(val output: String, val weights: DoubleArray, val bias: Double) {
    fun probability(features: DoubleArray): Double {
        require(features.size == weights.size) {
            "the $output output has ${features.size} values, the adapted head ${weights.size}"
        }
        var logit = bias
        for (i in weights.indices) logit += features[i] * weights[i]
        return if (logit >= 0) 1.0 / (1.0 + Math.exp(-logit)) else Math.exp(logit).let { it / (1.0 + it) }
    }
}

/** What the app needs from bundle.json (schema v1, written by fracture_edge.edge_runtime.bundle). */
data class FractureBundle(
    val labels: List<String>,
    val positiveLabel: String,
    val thresholds: Map<String, Double>,
    val defaultThreshold: String,
    val input: InputContract,
    /** The first of [APP_FORMATS] that bundle.json lists as verified; null when it lists none of them. */
    val artifact: ArtifactRecord?,
    val head: AdaptedHead? = null,
    /** bundle["site_model"]: the site check the app runs on the features output (its file ships beside the model). */
    val site: SiteRecord? = null,
) {
    val negativeLabel: String get() = labels.first { it != positiveLabel }

    /** [artifact], or a ModelMismatchException that names the formats and the export command. */
    fun requireArtifact(): ArtifactRecord = artifact ?: throw ModelMismatchException(
        "bundle.json lists none of ${APP_FORMATS.joinToString()} as a verified artifact: run " +
            "`fracture-edge export RUN --android-assets android_demo/app/src/main/assets` and rebuild")

    /** The threshold value for "balanced" or "screening"; unknown names are refused. */
    fun threshold(name: String): Double =
        thresholds[name] ?: throw IllegalArgumentException(
            "threshold must be one of ${THRESHOLD_NAMES.joinToString()}, got '$name'")

    companion object {
        const val SCHEMA_VERSION = 1
        val THRESHOLD_NAMES = listOf("balanced", "screening")

        /** Best first (smaller, faster): full int8 (uint8 in), int8 weights + float32 in (XNNPACK int8 kernels on arm64), fp16, fp32. */
        val APP_FORMATS = listOf("tflite-int8", "tflite-int8-dynamic", "tflite-fp16", "tflite-fp32")

        /** Input-contract values this core implements; any other value (or key) is refused. The normalization
         *  happens inside the model graph, so every backbone's (edge_runtime/bundle_schema.py NORMALIZATIONS) is fine. */
        val SUPPORTED_INPUT: Map<String, Set<String>> = mapOf(
            "color" to setOf("gray-to-rgb"),
            "resize" to setOf("triangle-antialias"),
            "fit" to setOf("stretch"),
            "rounding" to setOf("floor(x+0.5), clip 0..255"),
            "layout" to setOf("NHWC"),
            "normalization" to setOf("in-graph imagenet (x/255 - mean)/std", "in-graph mobilenet x/127.5 - 1"),
        )

        /** Parse and validate bundle.json text; throws UnsupportedBundleException with one clear line. */
        fun parse(text: String, source: String = "bundle.json"): FractureBundle = try {
            fromJson(JSONObject(text), source)
        } catch (exc: JSONException) {
            throw UnsupportedBundleException("$source: missing or malformed key (${exc.message})")
        }

        private fun fromJson(root: JSONObject, source: String): FractureBundle {
            val version = root.getInt("schema_version")
            require(version == SCHEMA_VERSION, source) {
                "schema_version $version is not supported (this app reads version $SCHEMA_VERSION)"
            }
            val labels = root.getJSONArray("labels").strings()
            val positive = root.getString("positive_label")
            require(labels.size == 2 && positive in labels && labels.toSet().size == 2, source) {
                "labels must be two names including positive_label"
            }
            val output = root.getJSONObject("output")
            checkOutput(output, source)
            val (thresholds, default) = readThresholds(root.getJSONObject("thresholds"), source)
            val artifact = root.optJSONObject("artifacts")?.let { chooseArtifact(it, source) }
            val head = root.optJSONObject("adapted_head")?.let { readHead(it, output.optJSONObject("extra"), source) }
            val site = root.optJSONObject("site_model")?.let { SiteRecord.parse(it, source) }
            val features = output.optJSONObject("extra")?.optJSONObject("features")?.optJSONArray("shape")
            require(site == null || (features != null && features.length() == 1 && features.getInt(0) == site.features),
                source) { "site_model reads ${site?.features} features, but output.extra declares no such features output" }
            return FractureBundle(labels, positive, thresholds, default,
                readInput(root.getJSONObject("input"), source), artifact, head, site)
        }

        /** The same rules as bundle_schema._check_adapted_head, one clear line per refusal. */
        private fun readHead(json: JSONObject, extra: JSONObject?, source: String): AdaptedHead {
            val kind = json.getString("kind")
            require(kind == "logistic", source) { "adapted_head.kind '$kind' is not supported (this app reads logistic)" }
            val output = json.getString("output")
            val shape = extra?.optJSONObject(output)?.optJSONArray("shape")
            require(shape != null && shape.length() == 1, source) {
                "adapted_head.output '$output' must be a one-dimensional output declared in output.extra"
            }
            val array = json.getJSONArray("weights")
            val weights = DoubleArray(array.length()) { array.getDouble(it) }
            val bias = json.getDouble("bias")
            require(weights.isNotEmpty() && weights.size == shape!!.getInt(0), source) {
                "adapted_head.weights has ${weights.size} values but output.extra.$output has ${shape!!.getInt(0)}"
            }
            require(weights.all { it.isFinite() } && bias.isFinite(), source) {
                "adapted_head weights and bias must be finite numbers"
            }
            return AdaptedHead(output, weights, bias)
        }

        private fun checkOutput(output: JSONObject, source: String) {
            val kind = output.getString("kind")
            val index = output.getInt("positive_index")
            require(kind == "sigmoid" && index == 0, source) {
                "output kind=$kind positive_index=$index is not supported (this app reads sigmoid, index 0)"
            }
        }

        private fun readThresholds(json: JSONObject, source: String): Pair<Map<String, Double>, String> {
            val values = THRESHOLD_NAMES.associateWith { json.getDouble(it) }
            values.forEach { (name, value) ->
                require(value in 0.0..1.0, source) { "thresholds.$name must be in [0, 1], got $value" }
            }
            val default = json.optString("default", "balanced")
            require(default in THRESHOLD_NAMES, source) {
                "thresholds.default must be one of ${THRESHOLD_NAMES.joinToString()}, got '$default'"
            }
            return values to default
        }

        private fun readInput(json: JSONObject, source: String): InputContract {
            val known = SUPPORTED_INPUT.keys + setOf("size", "channels", "pixel_range")
            for (key in json.keys()) {
                require(key in known, source) { "input.$key is not understood by this app version" }
            }
            for ((key, accepted) in SUPPORTED_INPUT) {
                val actual = json.get(key)
                require(accepted.any { it == actual }, source) {
                    "input.$key = '$actual' is not supported (this app implements ${accepted.joinToString(" or ") { "'$it'" }})"
                }
            }
            val range = json.getJSONArray("pixel_range")
            require(range.length() == 2 && range.getInt(0) == 0 && range.getInt(1) == 255, source) {
                "input.pixel_range $range is not supported (this app feeds raw pixels 0..255)"
            }
            val size = json.getInt("size")
            val channels = json.getInt("channels")
            require(size in 16..1024 && channels in 1..4, source) {
                "input size $size / channels $channels out of range (16..1024 / 1..4)"
            }
            return InputContract(size, channels)
        }

        /** The record of the first of [APP_FORMATS] in bundle["artifacts"] (export lists only verified ones). */
        private fun chooseArtifact(artifacts: JSONObject, source: String): ArtifactRecord? {
            val format = APP_FORMATS.firstOrNull { artifacts.optJSONObject(it) != null } ?: return null
            return readArtifact(format, artifacts.getJSONObject(format), source)
        }

        private fun readArtifact(format: String, json: JSONObject, source: String): ArtifactRecord {
            val file = json.getString("file")
            require(isPlainFileName(file), source) { "artifacts.$format.file '$file' must be a plain file name" }
            val quantization = json.optJSONObject("quantization")
            return ArtifactRecord(format, file, json.getString("sha256"),
                quantization?.optJSONObject("input")?.let(::readQuantization),
                quantization?.optJSONObject("output")?.let(::readQuantization))
        }

        private fun isPlainFileName(name: String) =
            name.isNotEmpty() && name != "." && name != ".." && name.none { it == '/' || it == '\\' }

        private fun readQuantization(json: JSONObject) =
            RecordedQuantization(json.getString("dtype"), json.getDouble("scale"), json.getInt("zero_point"),
                json.optJSONArray("shape")?.let { shape -> (0 until shape.length()).map { shape.getInt(it) } })

        private fun JSONArray.strings(): List<String> = (0 until length()).map { getString(it) }

        private inline fun require(condition: Boolean, source: String, message: () -> String) {
            if (!condition) throw UnsupportedBundleException("$source: ${message()}")
        }
    }
}
