package org.fractureedge.core

import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertDoesNotThrow
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.params.ParameterizedTest
import org.junit.jupiter.params.provider.CsvSource
import org.junit.jupiter.params.provider.ValueSource

/** Which artifact the app loads (FractureBundle.APP_FORMATS), and the recorded-tensor cross-check for it. */
class ArtifactChoiceTest {
    private val floatInput = TensorSpec(TensorType.FLOAT32, listOf(1, 64, 64, 3), 0.0, 0)
    private val floatOutput = TensorSpec(TensorType.FLOAT32, listOf(1, 1), 0.0, 0)
    private val uint8Input = TensorSpec(TensorType.UINT8, listOf(1, 64, 64, 3), 1.0, 0)
    private val uint8Output = TensorSpec(TensorType.UINT8, listOf(1, 1), 0.00390625, 0)

    @Test
    fun theOrderIsFullInt8ThenDynamicThenFp16ThenFp32() {
        assertEquals(listOf("tflite-int8", "tflite-int8-dynamic", "tflite-fp16", "tflite-fp32"), FractureBundle.APP_FORMATS)
    }

    @ParameterizedTest
    @ValueSource(strings = ["tflite-int8", "tflite-int8-dynamic", "tflite-fp16", "tflite-fp32"])
    fun choosesEachFormatWhenItIsTheOnlyOne(format: String) {
        val artifact = TestBundles.withArtifacts(format).requireArtifact()
        assertEquals(format, artifact.format)
        assertEquals(TestBundles.fileOf(format), artifact.file)
        assertEquals(TestBundles.sha256Of(format), artifact.sha256)
        val dtype = if (format == "tflite-int8") "uint8" else "float32"
        assertEquals(dtype, artifact.input?.dtype)
        assertEquals(listOf(1, 64, 64, 3), artifact.input?.shape)
        assertEquals(dtype, artifact.output?.dtype)
    }

    @ParameterizedTest
    @CsvSource(
        "'tflite-fp32 tflite-fp16 tflite-int8-dynamic tflite-int8', tflite-int8",
        "'tflite-int8-mixed tflite-fp32 tflite-int8-dynamic tflite-fp16', tflite-int8-dynamic",
        "'tflite-fp32 tflite-fp16', tflite-fp16",
        "'onnx-int8 tflite-int8-mixed tflite-fp32', tflite-fp32",
    )
    fun choosesTheFirstPresentFormatInPreferenceOrder(present: String, chosen: String) {
        val artifact = TestBundles.withArtifacts(*present.split(" ").toTypedArray()).requireArtifact()
        assertEquals(chosen, artifact.format)
        assertEquals(TestBundles.fileOf(chosen), artifact.file)
    }

    @ParameterizedTest
    @ValueSource(strings = ["", "tflite-int8-mixed onnx-int8 onnx-fp32"])
    fun refusesABundleWithNoneOfTheFour(present: String) {
        val bundle = TestBundles.withArtifacts(*present.split(" ").filter { it.isNotEmpty() }.toTypedArray())
        assertNull(bundle.artifact)
        assertNamesFormatsAndExport(assertThrows(ModelMismatchException::class.java) { bundle.requireArtifact() })
        assertNamesFormatsAndExport(assertThrows(ModelMismatchException::class.java) {
            FractureCore(bundle, uint8Input, uint8Output)
        })
    }

    @Test
    fun refusesABundleWithNoArtifactsKey() {
        val root = JSONObject(TestBundles.text("tflite-int8"))
        root.remove("artifacts")
        val bundle = FractureBundle.parse(root.toString())
        assertNamesFormatsAndExport(assertThrows(ModelMismatchException::class.java) { bundle.requireArtifact() })
    }

    @ParameterizedTest
    @ValueSource(strings = ["../model_fp32.tflite", "models/model_fp32.tflite", ""])
    fun refusesAnArtifactFileThatIsNotAPlainName(file: String) {
        val root = JSONObject(TestBundles.text("tflite-fp32"))
        root.getJSONObject("artifacts").getJSONObject("tflite-fp32").put("file", file)
        val error = assertThrows(UnsupportedBundleException::class.java) { FractureBundle.parse(root.toString()) }
        assertTrue(error.message!!.contains("artifacts.tflite-fp32.file"), error.message)
    }

    @ParameterizedTest
    @ValueSource(strings = ["tflite-int8-dynamic", "tflite-fp16", "tflite-fp32"])
    fun acceptsAFloat32ModelThatMatchesItsRecord(format: String) {
        val core = assertDoesNotThrow<FractureCore> {
            FractureCore(TestBundles.withArtifacts(format), floatInput, floatOutput)
        }
        assertEquals(TestBundles.fileOf(format), core.artifact.file)
    }

    @Test
    fun acceptsAUint8ModelThatMatchesItsRecord() {
        assertDoesNotThrow<FractureCore> { FractureCore(TestBundles.withArtifacts("tflite-int8"), uint8Input, uint8Output) }
    }

    @Test
    fun refusesAUint8ModelWhereTheBundleRecordedFloat32() {
        val bundle = TestBundles.withArtifacts("tflite-int8-dynamic")
        val error = assertThrows(ModelMismatchException::class.java) { FractureCore(bundle, uint8Input, floatOutput) }
        assertMentions(error, "model_int8_dynamic.tflite does not match bundle.json", "input tensor is uint8",
            "recorded float32 scale=0.0 zero_point=0")
    }

    @Test
    fun refusesAFloat32OutputWhereTheBundleRecordedUint8() {
        val bundle = TestBundles.withArtifacts("tflite-int8")
        val error = assertThrows(ModelMismatchException::class.java) { FractureCore(bundle, uint8Input, floatOutput) }
        assertMentions(error, "model_int8.tflite does not match bundle.json", "output tensor is float32", "recorded uint8")
    }

    @Test
    fun refusesAShapeOtherThanTheRecordedOne() {
        val bundle = TestBundles.withArtifacts("tflite-fp32")
        val flatOutput = TensorSpec(TensorType.FLOAT32, listOf(1), 0.0, 0)
        val error = assertThrows(ModelMismatchException::class.java) { FractureCore(bundle, floatInput, flatOutput) }
        assertMentions(error, "model_fp32.tflite does not match bundle.json", "output shape [1], bundle.json recorded [1, 1]")
    }

    private fun assertNamesFormatsAndExport(error: ModelMismatchException) =
        assertMentions(error, *FractureBundle.APP_FORMATS.toTypedArray(),
            "fracture-edge export RUN --android-assets android_demo/app/src/main/assets")

    private fun assertMentions(error: Exception, vararg parts: String) {
        for (part in parts) assertTrue(error.message!!.contains(part), "'$part' not in: ${error.message}")
    }
}
