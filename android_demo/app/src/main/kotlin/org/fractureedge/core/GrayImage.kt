package org.fractureedge.core

/** Decoded pixels as packed 0xAARRGGBB ints, row by row (Bitmap.getPixels on Android, ImageIO in tests). */
class ArgbImage(val pixels: IntArray, val width: Int, val height: Int) {
    init {
        require(width > 0 && height > 0 && pixels.size == width * height) {
            "image has ${pixels.size} pixels, expected $width x $height"
        }
    }
}

/** Luma in 0..255 as float (no rounding: rounding happens once, after the resize). */
class GrayImage(val values: FloatArray, val width: Int, val height: Int)

/**
 * The decoding decisions of fracture_edge.edge_runtime.decoding, applied to already-decoded pixels.
 *
 * - A grayscale source (8-bit PNG or JPEG with one channel, Pillow mode "L") keeps its value exactly.
 * - Anything else: alpha composited onto black with Pillow's integer alpha_composite arithmetic, then
 *   ITU-R 601 luma in float32, summed in the same order as numpy (r*0.299 + g*0.587) + b*0.114.
 * - EXIF orientation 1..8 is applied first, exactly as PIL.ImageOps.exif_transpose.
 */
object GrayConversion {
    private const val R_WEIGHT = 0.299f
    private const val G_WEIGHT = 0.587f
    private const val B_WEIGHT = 0.114f

    fun toGray(image: ArgbImage, grayscaleSource: Boolean, exifOrientation: Int = 1): GrayImage {
        val oriented = orient(image, exifOrientation)
        val values = FloatArray(oriented.pixels.size)
        for (i in values.indices) {
            val argb = oriented.pixels[i]
            values[i] = if (grayscaleSource) ((argb shr 16) and 0xFF).toFloat() else luma(argb)
        }
        return GrayImage(values, oriented.width, oriented.height)
    }

    /** float32 luma of one non-premultiplied ARGB pixel composited onto black. */
    fun luma(argb: Int): Float {
        val alpha = (argb ushr 24) and 0xFF
        val r = onBlack((argb shr 16) and 0xFF, alpha).toFloat()
        val g = onBlack((argb shr 8) and 0xFF, alpha).toFloat()
        val b = onBlack(argb and 0xFF, alpha).toFloat()
        return r * R_WEIGHT + g * G_WEIGHT + b * B_WEIGHT
    }

    /** Pillow's ImagingAlphaComposite over opaque black (PRECISION_BITS = 7, SHIFTFORDIV255). */
    fun onBlack(channel: Int, alpha: Int): Int {
        if (alpha == 255) return channel
        if (alpha == 0) return 0
        val x = channel * alpha * 128 + (0x80 shl 7)
        return ((((x shr 8) + x) shr 8) shr 7)
    }

    /** Apply EXIF orientation (1..8) like PIL.ImageOps.exif_transpose; other values mean "as stored". */
    fun orient(image: ArgbImage, orientation: Int): ArgbImage {
        if (orientation !in 2..8) return image
        val w = image.width
        val h = image.height
        val swapped = orientation >= 5
        val outW = if (swapped) h else w
        val outH = if (swapped) w else h
        val out = IntArray(w * h)
        for (y in 0 until outH) {
            for (x in 0 until outW) {
                out[y * outW + x] = image.pixels[sourceIndex(orientation, x, y, w, h)]
            }
        }
        return ArgbImage(out, outW, outH)
    }

    /** Index in the stored image of output pixel (x, y) for an EXIF orientation 2..8. */
    private fun sourceIndex(orientation: Int, x: Int, y: Int, w: Int, h: Int): Int = when (orientation) {
        2 -> y * w + (w - 1 - x)                    // mirror left-right
        3 -> (h - 1 - y) * w + (w - 1 - x)          // rotate 180
        4 -> (h - 1 - y) * w + x                    // mirror top-bottom
        5 -> x * w + y                              // transpose
        6 -> (h - 1 - x) * w + y                    // rotate 90 clockwise
        7 -> (h - 1 - x) * w + (w - 1 - y)          // transverse
        else -> x * w + (w - 1 - y)                 // 8: rotate 90 counter-clockwise
    }
}
