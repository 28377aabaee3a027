package org.fractureedge.core

import org.json.JSONArray
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.DynamicTest
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestFactory
import org.junit.jupiter.params.ParameterizedTest
import org.junit.jupiter.params.provider.CsvSource
import org.junit.jupiter.params.provider.ValueSource
import java.security.MessageDigest
import javax.imageio.ImageIO

/**
 * The Kotlin core against vectors written by scripts/make_android_golden.py from the Python
 * preprocessing: every model input must be byte-identical (sha256), not merely close.
 */
class GoldenVectorsTest {
    private val expected = JSONObject(resource("expected.json").toString(Charsets.UTF_8))
    private val bundle = FractureBundle.parse(resource("bundle.json").toString(Charsets.UTF_8))

    @TestFactory
    fun modelInputsMatchPythonByteForByte(): List<DynamicTest> = objects(expected.getJSONArray("images"))
        .flatMap { record ->
            val sizes = record.getJSONObject("tensors")
            sizes.keys().asSequence().map { size ->
                DynamicTest.dynamicTest("${record.getString("file")} @ $size") {
                    checkTensor(record, size.toInt(), sizes.getJSONObject(size))
                }
            }.toList()
        }

    /** A FLOAT32-input model (tflite-int8-dynamic, -fp16, -fp32) gets the same pixels as floats, as Python feeds them. */
    @TestFactory
    fun float32InputIsTheRawPixelsPythonFeeds(): List<DynamicTest> = objects(expected.getJSONArray("images"))
        .flatMap { record ->
            val sizes = record.getJSONObject("tensors")
            sizes.keys().asSequence().map { size ->
                DynamicTest.dynamicTest("${record.getString("file")} @ $size as float32") {
                    checkFloat32Feed(record, size.toInt(), sizes.getJSONObject(size))
                }
            }.toList()
        }

    @TestFactory
    fun headerSnifferMatchesPillowModes(): List<DynamicTest> {
        val sniffed = objects(expected.getJSONArray("sniff")).map {
            Triple(it.getString("file"), it.getBoolean("grayscale"), it.getInt("bit_depth"))
        }
        val pngs = objects(expected.getJSONArray("images")).map {
            Triple(it.getString("file"), it.getString("mode") == "L", 8)
        }
        return (sniffed + pngs).map { (file, gray, depth) ->
            DynamicTest.dynamicTest(file) {
                val source = SourceFormat.sniff(resource(file))
                assertEquals(gray to depth, source.grayscale to source.bitDepth, file)
            }
        }
    }

    @Test
    fun resizeWeightsMatchNumpyBitForBit() {
        for (case in objects(expected.getJSONArray("weights"))) {
            val nIn = case.getInt("n_in")
            val nOut = case.getInt("n_out")
            val dense = java.nio.ByteBuffer.allocate(nIn * nOut * 8).order(java.nio.ByteOrder.LITTLE_ENDIAN)
            TriangleResize.weights(nIn, nOut).forEachIndexed { i, taps ->
                taps.weights.forEachIndexed { t, w -> dense.putDouble((i * nIn + taps.first + t) * 8, w) }
            }
            assertEquals(case.getString("sha256"), sha256(dense.array()), "resize weights $nIn -> $nOut")
        }
    }

    @Test
    fun quantizationMatchesPythonBackends() {
        for (case in objects(expected.getJSONArray("quantization"))) {
            val type = TensorType.valueOf(case.getString("dtype").uppercase())
            val spec = TensorSpec(type, listOf(1), case.getDouble("scale"), case.getInt("zero_point"))
            if (case.has("pixels")) {
                val pixels = ints(case.getJSONArray("pixels"))
                val packed = doubles(case.getJSONArray("packed"))
                // + 0.0 turns -0.0 (rint of a tiny negative) into 0.0: the same stored integer
                assertEquals(packed, pixels.map { TensorCodec.quantize(it.toDouble(), spec) + 0.0 }, case.toString())
            } else {
                val raw = ints(case.getJSONArray("raw_output"))
                val probs = doubles(case.getJSONArray("probability"))
                assertEquals(probs, raw.map { TensorCodec.dequantize(it.toDouble(), spec) }, case.toString())
            }
        }
    }

    @Test
    fun decisionsMatchPythonThresholds() {
        val spec = TensorSpec(TensorType.UINT8, listOf(1, 64, 64, 3), 1.0, 0)
        val core = FractureCore(bundle, spec, TensorSpec(TensorType.UINT8, listOf(1, 1), 0.00390625, 0))
        for (case in objects(expected.getJSONArray("decisions"))) {
            val decision = core.decide(case.getDouble("probability"), case.getString("threshold"))
            assertEquals(case.getString("label"), decision.label, case.toString())
        }
    }

    @Test
    fun adaptedHeadMatchesPython() {
        val adapted = FractureBundle.parse(resource("bundle_adapted.json").toString(Charsets.UTF_8))
        val core = FractureCore(adapted, TensorSpec(TensorType.UINT8, listOf(1, 64, 64, 3), 1.0, 0),
            TensorSpec(TensorType.UINT8, listOf(1, 1), 0.00390625, 0))
        val cases = objects(expected.getJSONArray("adapted_head"))
        assertEquals(3, cases.size)
        for (case in cases) {
            val raw = case.getJSONArray("raw_uint8")
            val spec = TensorSpec(TensorType.UINT8, listOf(1, raw.length()), case.getDouble("scale"), case.getInt("zero_point"))
            val buffer = java.nio.ByteBuffer.allocateDirect(raw.length())
            for (i in 0 until raw.length()) buffer.put(raw.getInt(i).toByte())
            buffer.rewind()
            val features = TensorCodec.readVector(buffer, spec)
            assertEquals(case.getDouble("probability"), core.probability(0.5, features), 1e-12, case.toString())
        }
        assertEquals(0.5, FractureCore(bundle, core.input, core.output).probability(0.5, null))
    }

    /** "" = the subspace model of bundles exported before the residual design, "_ppca" = the one export writes. */
    @ParameterizedTest
    @ValueSource(strings = ["", "_ppca"])
    fun siteModelMatchesPython(suffix: String) {
        val site = FractureBundle.parse(resource("bundle_site$suffix.json").toString(Charsets.UTF_8)).site!!
        assertEquals(suffix.isNotEmpty(), site.residualScale > 0.0, "ppca records carry their residual_scale")
        val model = SiteModel.fromBytes(site, resource(site.file))
        val cases = objects(expected.getJSONArray("site_model$suffix"))
        assertTrue(cases.size >= 12 && cases.any { it.getBoolean("outside_training_data") } &&
            cases.any { !it.getBoolean("outside_training_data") }, "cases on both sides of the flag")
        for (case in cases) {
            val features = doubles(case.getJSONArray("features")).toDoubleArray()
            val want = case.getDouble("distance")
            assertEquals(want, model.distance(features), 1e-5 * want, case.toString())
            val score = model.score(features)
            assertEquals(case.getDouble("in_distribution"), score.inDistribution, 1e-12, case.toString())
            assertEquals(case.getBoolean("outside_training_data"), score.outsideTrainingData, case.toString())
        }
        val wrong = site.copy(components = site.components + 1)
        assertThrows(ModelMismatchException::class.java) { SiteModel.fromBytes(wrong, resource(site.file)) }
    }

    /** A method this app does not know (a newer export), or a ppca record without its scale: refused, named. */
    @ParameterizedTest
    @CsvSource("ppca-v2, 0.5, site_model.method 'ppca-v2' is not supported", "ppca, -1, site_model.residual_scale",
        "ppca, , site_model.residual_scale")
    fun siteRecordOfAnotherMethodIsRefused(method: String, scale: Double?, message: String) {
        val root = JSONObject(resource("bundle_site_ppca.json").toString(Charsets.UTF_8))
        root.getJSONObject("site_model").put("method", method).apply {
            if (scale == null) remove("residual_scale") else put("residual_scale", scale)
        }
        val error = assertThrows(UnsupportedBundleException::class.java) { FractureBundle.parse(root.toString()) }
        assertTrue(error.message!!.contains(message), error.message)
    }

    private fun checkTensor(record: JSONObject, size: Int, want: JSONObject) {
        val file = record.getString("file")
        val bytes = resource(file)
        val gray = GrayConversion.toGray(readArgb(bytes), SourceFormat.sniff(bytes).grayscale,
            record.getInt("orientation"))
        val shape = record.getJSONArray("decoded_shape")
        assertEquals(listOf(shape.getInt(0), shape.getInt(1)), listOf(gray.height, gray.width), "$file: decoded shape")
        val pixels = FractureCore.modelPixels(gray, InputContract(size, bundle.input.channels))
        val rowSums = (0 until size).map { r -> (0 until size).sumOf { c -> pixels[(r * size + c) * 3] } }
        assertEquals(ints(want.getJSONArray("row_sums")), rowSums, "$file @ $size: row sums of channel 0")
        for (sample in want.getJSONArray("samples").let(::arrays)) {
            val (r, c, v) = ints(sample)
            assertEquals(v, pixels[(r * size + c) * 3], "$file @ $size: pixel ($r, $c)")
        }
        assertEquals(want.getString("sha256"), sha256(ByteArray(pixels.size) { pixels[it].toByte() }), "$file @ $size: sha256")
    }

    /** The whole app path (FractureCore.prepare) into a FLOAT32 input: raw 0..255 floats, bytes as Python's. */
    private fun checkFloat32Feed(record: JSONObject, size: Int, want: JSONObject) {
        val file = record.getString("file")
        val bytes = resource(file)
        val core = FractureCore(TestBundles.withArtifacts("tflite-int8-dynamic", size = size),
            TensorSpec(TensorType.FLOAT32, listOf(1, size, size, 3), 0.0, 0),
            TensorSpec(TensorType.FLOAT32, listOf(1, 1), 0.0, 0))
        val buffer = core.prepare(readArgb(bytes), SourceFormat.sniff(bytes), record.getInt("orientation"))
        assertEquals(size * size * 3 * 4, buffer.remaining(), "$file @ $size: float32 buffer bytes")
        val floats = FloatArray(buffer.remaining() / 4) { buffer.getFloat(it * 4) }
        assertTrue(floats.all { it in 0f..255f && it == it.toInt().toFloat() }, "$file @ $size: not raw 0..255 values")
        val asUint8 = ByteArray(floats.size) { floats[it].toInt().toByte() }
        assertEquals(want.getString("sha256"), sha256(asUint8), "$file @ $size: float32 values vs the uint8 golden")
        val littleEndian = java.nio.ByteBuffer.allocate(floats.size * 4).order(java.nio.ByteOrder.LITTLE_ENDIAN)
        floats.forEach { littleEndian.putFloat(it) }
        assertEquals(want.getString("float32_sha256"), sha256(littleEndian.array()), "$file @ $size: float32 bytes vs Python")
    }

    companion object {
        fun resource(name: String): ByteArray =
            GoldenVectorsTest::class.java.getResourceAsStream("/golden/$name")?.use { it.readBytes() }
                ?: error("golden/$name not on the test classpath (run scripts/make_android_golden.py)")

        /**
         * Decode like Android's Bitmap.getPixels: raw raster samples, no colour management.
         * (BufferedImage.getRGB would convert gray PNGs through a linear-gray colour space.)
         */
        fun readArgb(bytes: ByteArray): ArgbImage {
            val image = ImageIO.read(bytes.inputStream())
            val raster = image.raster
            val bands = raster.numBands
            val pixels = IntArray(image.width * image.height)
            val sample = IntArray(bands)
            for (y in 0 until image.height) for (x in 0 until image.width) {
                raster.getPixel(x, y, sample)
                val (r, g, b) = if (bands >= 3) Triple(sample[0], sample[1], sample[2])
                    else Triple(sample[0], sample[0], sample[0])
                val a = if (bands == 2 || bands == 4) sample[bands - 1] else 255
                pixels[y * image.width + x] = (a shl 24) or (r shl 16) or (g shl 8) or b
            }
            return ArgbImage(pixels, image.width, image.height)
        }

        private fun sha256(bytes: ByteArray) =
            MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }

        private fun objects(array: JSONArray) = (0 until array.length()).map { array.getJSONObject(it) }
        private fun arrays(array: JSONArray) = (0 until array.length()).map { array.getJSONArray(it) }
        private fun ints(array: JSONArray) = (0 until array.length()).map { array.getInt(it) }
        private fun doubles(array: JSONArray) = (0 until array.length()).map { array.getDouble(it) }
    }
}
