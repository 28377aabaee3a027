package org.fractureedge.core

import org.json.JSONArray
import org.json.JSONObject

/** The golden bundle.json with its artifacts replaced: records shaped like `fracture-edge export` writes them. */
object TestBundles {
    private val golden: String get() = GoldenVectorsTest.resource("bundle.json").toString(Charsets.UTF_8)

    /** File names as export writes them; any other format gets a made-up one. */
    fun fileOf(format: String): String = when (format) {
        "tflite-int8" -> "model_int8.tflite"
        "tflite-int8-dynamic" -> "model_int8_dynamic.tflite"
        "tflite-int8-mixed" -> "model_int8_mixed.tflite"
        "tflite-fp16" -> "model_fp16.tflite"
        "tflite-fp32" -> "model_fp32.tflite"
        else -> "model_$format.bin"
    }

    /** A distinct fake hash per format, so a test can tell which record was chosen. */
    fun sha256Of(format: String): String = format.hashCode().toUInt().toString(16).padStart(8, '0').repeat(8)

    /** bundle.json text whose artifacts are exactly [formats] (none: an empty object), input size [size]. */
    fun text(vararg formats: String, size: Int = 64): String {
        val root = JSONObject(golden)
        root.getJSONObject("input").put("size", size)
        val artifacts = JSONObject()
        for (format in formats) artifacts.put(format, record(format, size))
        return root.put("artifacts", artifacts).toString()
    }

    fun withArtifacts(vararg formats: String, size: Int = 64): FractureBundle =
        FractureBundle.parse(text(*formats, size = size))

    /** tflite-int8 (and the mixed one) record uint8 in/out; every other format float32 (scale 0, zero point 0). */
    private fun record(format: String, size: Int): JSONObject {
        val uint8 = format == "tflite-int8" || format == "tflite-int8-mixed"
        val input = tensor("input", if (uint8) "uint8" else "float32", listOf(1, size, size, 3), if (uint8) 1.0 else 0.0)
        val output = tensor("probability", if (uint8) "uint8" else "float32", listOf(1, 1), if (uint8) 0.00390625 else 0.0)
        return JSONObject().put("file", fileOf(format)).put("bytes", 0).put("sha256", sha256Of(format))
            .put("format", format).put("quantization", JSONObject().put("input", input).put("output", output))
    }

    private fun tensor(name: String, dtype: String, shape: List<Int>, scale: Double): JSONObject =
        JSONObject().put("name", name).put("dtype", dtype).put("shape", JSONArray(shape))
            .put("scale", scale).put("zero_point", 0)
}
