package org.fractureedge.demo

import android.app.Activity
import android.content.ActivityNotFoundException
import android.content.ContentValues
import android.content.Intent
import android.graphics.Bitmap
import android.net.Uri
import android.os.Build
import android.os.Bundle
import android.provider.MediaStore
import android.widget.Button
import android.widget.ImageView
import android.widget.RadioGroup
import android.widget.TextView
import java.util.Locale
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * Pick an X-ray from the gallery or take a photo; show fractured / not fractured, the probability,
 * the threshold (balanced or screening) and the time taken. Everything runs on the device.
 */
class MainActivity : Activity() {
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()
    @Volatile private var classifier: FractureClassifier? = null
    private var lastImage: LoadedImage? = null
    private var cameraUri: Uri? = null

    private lateinit var preview: ImageView
    private lateinit var result: TextView
    private lateinit var details: TextView
    private lateinit var thresholds: RadioGroup

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        preview = findViewById(R.id.preview)
        result = findViewById(R.id.result)
        details = findViewById(R.id.details)
        thresholds = findViewById(R.id.thresholds)
        cameraUri = savedInstanceState?.getParcelable(STATE_CAMERA_URI)
        findViewById<Button>(R.id.pick).setOnClickListener { pickImage() }
        findViewById<Button>(R.id.camera).setOnClickListener { takePhoto() }
        thresholds.setOnCheckedChangeListener { _, _ -> lastImage?.let(::classify) }
        result.setText(R.string.loading_model)
        worker.execute { loadModel() }
    }

    override fun onSaveInstanceState(outState: Bundle) {
        super.onSaveInstanceState(outState)
        outState.putParcelable(STATE_CAMERA_URI, cameraUri)
    }

    override fun onDestroy() {
        worker.execute { classifier?.close() }
        worker.shutdown()
        super.onDestroy()
    }

    private fun loadModel() {
        try {
            val loaded = FractureClassifier.fromAssets(assets)
            classifier = loaded
            val name = loaded.core.bundle.defaultThreshold
            runOnUiThread {
                thresholds.check(if (name == "screening") R.id.screening else R.id.balanced)
                result.setText(R.string.ready)
            }
        } catch (exc: RuntimeException) {
            showError(exc)
        }
    }

    private fun pickImage() {
        val intent = Intent(Intent.ACTION_OPEN_DOCUMENT)
            .addCategory(Intent.CATEGORY_OPENABLE)
            .setType("image/*")
        launch(intent, REQUEST_PICK)
    }

    /** Full-size photo into MediaStore on API 29+ (no permission needed); the camera's thumbnail before. */
    private fun takePhoto() {
        val intent = Intent(MediaStore.ACTION_IMAGE_CAPTURE)
        cameraUri = null
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) {
            val values = ContentValues().apply {
                put(MediaStore.Images.Media.DISPLAY_NAME, "fracture-edge-${System.currentTimeMillis()}.jpg")
                put(MediaStore.Images.Media.MIME_TYPE, "image/jpeg")
                put(MediaStore.Images.Media.RELATIVE_PATH, "Pictures/fracture-edge")
            }
            cameraUri = contentResolver.insert(MediaStore.Images.Media.EXTERNAL_CONTENT_URI, values)
            cameraUri?.let { intent.putExtra(MediaStore.EXTRA_OUTPUT, it) }
        }
        launch(intent, REQUEST_CAMERA)
    }

    private fun launch(intent: Intent, request: Int) {
        try {
            startActivityForResult(intent, request)
        } catch (exc: ActivityNotFoundException) {
            details.text = getString(R.string.no_app_for, intent.action)
        }
    }

    override fun onActivityResult(requestCode: Int, resultCode: Int, data: Intent?) {
        super.onActivityResult(requestCode, resultCode, data)
        if (resultCode != RESULT_OK) return
        val uri = if (requestCode == REQUEST_CAMERA) cameraUri ?: data?.data else data?.data
        val thumbnail = data?.extras?.get("data") as? Bitmap
        result.setText(R.string.working)
        worker.execute {
            try {
                val image = when {
                    uri != null -> ImageLoading.fromUri(contentResolver, uri)
                    thumbnail != null -> ImageLoading.fromThumbnail(thumbnail)
                    else -> throw java.io.IOException(getString(R.string.no_image))
                }
                runOnUiThread { showImage(image) }
            } catch (exc: Exception) {
                showError(exc)
            }
        }
    }

    private fun showImage(image: LoadedImage) {
        lastImage = image
        preview.setImageBitmap(previewOf(image.preview))
        classify(image)
    }

    private fun classify(image: LoadedImage) {
        val model = classifier ?: return
        val thresholdName = if (thresholds.checkedRadioButtonId == R.id.screening) "screening" else "balanced"
        worker.execute {
            try {
                val outcome = model.classify(image, thresholdName)
                runOnUiThread { showResult(outcome, image) }
            } catch (exc: RuntimeException) {
                showError(exc)
            }
        }
    }

    private fun showResult(outcome: Classification, image: LoadedImage) {
        val d = outcome.decision
        result.text = if (d.positive) getString(R.string.fractured) else getString(R.string.not_fractured)
        details.text = getString(R.string.details,
            String.format(Locale.US, "%.3f", d.probability), d.thresholdName,
            String.format(Locale.US, "%.3f", d.threshold),
            String.format(Locale.US, "%.1f", outcome.inferenceMillis),
            String.format(Locale.US, "%.1f", outcome.preprocessMillis),
            image.pixels.width, image.pixels.height, d.label) + siteLine(outcome)
    }

    /** The result's site check line: outside the training data (treat with caution) or like it; none without a site model. */
    private fun siteLine(outcome: Classification): String {
        val site = outcome.site ?: return ""
        val score = String.format(Locale.US, "%.3f", site.inDistribution)
        return "\n" + getString(if (site.outsideTrainingData) R.string.site_outside else R.string.site_inside, score)
    }

    private fun showError(exc: Exception) = runOnUiThread {
        result.setText(R.string.error)
        details.text = exc.message ?: exc.toString()
    }

    private fun previewOf(bitmap: Bitmap): Bitmap {
        val longest = maxOf(bitmap.width, bitmap.height)
        if (longest <= PREVIEW_MAX) return bitmap
        val scale = PREVIEW_MAX.toFloat() / longest
        return Bitmap.createScaledBitmap(bitmap, (bitmap.width * scale).toInt().coerceAtLeast(1),
            (bitmap.height * scale).toInt().coerceAtLeast(1), true)
    }

    private companion object {
        const val REQUEST_PICK = 1
        const val REQUEST_CAMERA = 2
        const val PREVIEW_MAX = 1024
        const val STATE_CAMERA_URI = "camera_uri"
    }
}
