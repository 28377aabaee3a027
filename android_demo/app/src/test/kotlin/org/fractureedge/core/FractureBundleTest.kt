package org.fractureedge.core

import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.params.ParameterizedTest
import org.junit.jupiter.params.provider.CsvSource

/** bundle.json parsing: what the golden bundle says, and clear refusals of anything unsupported. */
class FractureBundleTest {
    private val text = GoldenVectorsTest.resource("bundle.json").toString(Charsets.UTF_8)

    @Test
    fun readsTheGoldenBundle() {
        val bundle = FractureBundle.parse(text)
        assertEquals(InputContract(64, 3), bundle.input)
        assertEquals("fractured", bundle.positiveLabel)
        assertEquals("not_fractured", bundle.negativeLabel)
        assertEquals(0.2, bundle.threshold("screening"))
        val artifact = bundle.requireArtifact()
        assertEquals("tflite-int8" to "model_int8.tflite", artifact.format to artifact.file)
        assertEquals(RecordedQuantization("uint8", 0.00390625, 0, listOf(1, 1)), artifact.output)
    }

    @ParameterizedTest
    @CsvSource(
        "input, resize, '\"bicubic\"', input.resize",
        "input, color, '\"rgb\"', input.color",
        "input, fit, '\"center-crop\"', input.fit",
        "input, rounding, '\"round-half-even\"', input.rounding",
        "input, normalization, '\"none\"', input.normalization",
        "input, pixel_range, '[0, 1]', input.pixel_range",
        "input, letterbox, 'true', input.letterbox",
        "output, kind, '\"softmax\"', output kind",
        "thresholds, balanced, '1.5', thresholds.balanced",
        "root, schema_version, '2', schema_version",
    )
    fun refusesWhatItCannotReproduce(section: String, key: String, value: String, mentioned: String) {
        val root = JSONObject(text)
        val target = if (section == "root") root else root.getJSONObject(section)
        target.put(key, JSONObject("{\"v\": $value}").get("v"))
        val error = assertThrows(UnsupportedBundleException::class.java) { FractureBundle.parse(root.toString()) }
        assertTrue(error.message!!.contains(mentioned), error.message)
    }

    @Test
    fun acceptsEveryBackbonesInGraphNormalization() {
        val root = JSONObject(text)
        root.getJSONObject("input").put("normalization", "in-graph mobilenet x/127.5 - 1")
        assertEquals(FractureBundle.parse(root.toString()).input, FractureBundle.parse(text).input)
    }

    private val adaptedText = GoldenVectorsTest.resource("bundle_adapted.json").toString(Charsets.UTF_8)

    @Test
    fun readsTheAdaptedHeadOnlyWhenThereIsOne() {
        val head = FractureBundle.parse(adaptedText).head!!
        assertEquals("features", head.output)
        assertEquals(8, head.weights.size)
        assertEquals(-0.75, head.bias)
        assertEquals(null, FractureBundle.parse(text).head)
    }

    @ParameterizedTest
    @CsvSource(
        "weights, '[0.1, 0.2]', 'has 2 values but output.extra.features has 8'",
        "output, '\"heatmap\"', 'must be a one-dimensional output declared in output.extra'",
        "kind, '\"mlp\"', 'adapted_head.kind'",
        "bias, '\"x\"', 'missing or malformed key'",
    )
    fun refusesABadAdaptedHead(key: String, value: String, mentioned: String) {
        val root = JSONObject(adaptedText)
        root.getJSONObject("adapted_head").put(key, JSONObject("{\"v\": $value}").get("v"))
        val error = assertThrows(UnsupportedBundleException::class.java) { FractureBundle.parse(root.toString()) }
        assertTrue(error.message!!.contains(mentioned), error.message)
    }

    @Test
    fun refusesAModelWhoseQuantizationDiffersFromTheBundle() {
        val bundle = FractureBundle.parse(text)
        val input = TensorSpec(TensorType.INT8, listOf(1, 64, 64, 3), 1.0, -128)
        val output = TensorSpec(TensorType.UINT8, listOf(1, 1), 0.00390625, 0)
        val error = assertThrows(ModelMismatchException::class.java) { FractureCore(bundle, input, output) }
        assertTrue(error.message!!.contains("input tensor is int8"), error.message)
    }

    @Test
    fun refusesSixteenBitSources() {
        val error = assertThrows(IllegalArgumentException::class.java) {
            FractureCore.checkSource(SourceFormat("png", grayscale = true, bitDepth = 16))
        }
        assertTrue(error.message!!.contains("16-bit PNG"), error.message)
    }
}
