package org.fractureedge.demo

import android.content.ContentResolver
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.media.ExifInterface
import android.net.Uri
import org.fractureedge.core.ArgbImage
import org.fractureedge.core.ImageLimits
import org.fractureedge.core.SourceFormat
import java.io.ByteArrayInputStream
import java.io.IOException

/** Decoded pixels plus what the file header and EXIF say about them (the core needs both). */
class LoadedImage(val pixels: ArgbImage, val source: SourceFormat, val exifOrientation: Int, val preview: Bitmap)

/**
 * Reads images the way the core expects: full resolution (no inSampleSize), ARGB_8888, EXIF read separately.
 * The size is checked from the header first, against fracture-edge's limits (core/ImageLimits.kt).
 */
object ImageLoading {
    /** A gallery or camera file, by content URI. */
    fun fromUri(resolver: ContentResolver, uri: Uri): LoadedImage {
        val bytes = resolver.openInputStream(uri)?.use { it.readBytes() }
            ?: throw IOException("$uri: cannot open")
        if (bytes.isEmpty()) throw IOException("$uri: empty file (0 bytes)")
        val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
        BitmapFactory.decodeByteArray(bytes, 0, bytes.size, bounds)
        if (bounds.outWidth <= 0 || bounds.outHeight <= 0) throw IOException("$uri: not an image Android can decode")
        ImageLimits.check(uri.toString(), bounds.outWidth, bounds.outHeight)   // 32 MP, 16,384 px side, 20:1
        val options = BitmapFactory.Options().apply { inPreferredConfig = Bitmap.Config.ARGB_8888 }
        val bitmap = BitmapFactory.decodeByteArray(bytes, 0, bytes.size, options)
            ?: throw IOException("$uri: cannot decode image")
        return LoadedImage(argb(bitmap), SourceFormat.sniff(bytes),
            exifOrientation(bytes), bitmap)
    }

    /** The camera app's small preview bitmap (no file, no EXIF: already upright, colour). */
    fun fromThumbnail(bitmap: Bitmap): LoadedImage =
        LoadedImage(argb(bitmap), SourceFormat("camera-thumbnail", grayscale = false, bitDepth = 8), 1, bitmap)

    private fun argb(bitmap: Bitmap): ArgbImage {
        val pixels = IntArray(bitmap.width * bitmap.height)
        bitmap.getPixels(pixels, 0, bitmap.width, 0, 0, bitmap.width, bitmap.height)  // non-premultiplied
        return ArgbImage(pixels, bitmap.width, bitmap.height)
    }

    private fun exifOrientation(bytes: ByteArray): Int = try {
        ExifInterface(ByteArrayInputStream(bytes))
            .getAttributeInt(ExifInterface.TAG_ORIENTATION, ExifInterface.ORIENTATION_NORMAL)
    } catch (exc: IOException) {
        ExifInterface.ORIENTATION_NORMAL
    }
}
