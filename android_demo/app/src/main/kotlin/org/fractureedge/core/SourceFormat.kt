package org.fractureedge.core

/**
 * What the file header says about the stored pixels, which decoded ARGB no longer tells:
 * Pillow decodes a one-channel 8-bit PNG/JPEG as mode "L" and keeps its values exactly, while
 * anything else goes through the float luma formula (which moves 35 of the 256 gray levels by ~1e-6).
 */
data class SourceFormat(val container: String, val grayscale: Boolean, val bitDepth: Int) {
    companion object {
        private val PNG_MAGIC = byteArrayOf(0x89.toByte(), 'P'.code.toByte(), 'N'.code.toByte(), 'G'.code.toByte())
        private val OTHER = SourceFormat("other", grayscale = false, bitDepth = 8)

        /** Sniff PNG (IHDR) or JPEG (SOFn) headers; other formats are treated as 8-bit colour. */
        fun sniff(head: ByteArray): SourceFormat = when {
            head.size >= 26 && (0 until 4).all { head[it] == PNG_MAGIC[it] } -> {
                val colorType = u8(head, 25)
                SourceFormat("png", grayscale = colorType == 0, bitDepth = u8(head, 24))
            }
            head.size >= 4 && u8(head, 0) == 0xFF && u8(head, 1) == 0xD8 -> sniffJpeg(head)
            else -> OTHER
        }

        /** Walk JPEG marker segments to the first SOFn: precision byte and component count. */
        private fun sniffJpeg(head: ByteArray): SourceFormat {
            var i = 2
            while (i + 9 < head.size) {
                if (u8(head, i) != 0xFF) return OTHER
                val marker = u8(head, i + 1)
                if (marker == 0xFF) { i++; continue }          // fill byte
                val isSof = marker in 0xC0..0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC
                if (isSof) {
                    return SourceFormat("jpeg", grayscale = u8(head, i + 9) == 1, bitDepth = u8(head, i + 4))
                }
                i += 2 + ((u8(head, i + 2) shl 8) or u8(head, i + 3))
            }
            return SourceFormat("jpeg", grayscale = false, bitDepth = 8)
        }

        private fun u8(bytes: ByteArray, index: Int): Int = bytes[index].toInt() and 0xFF
    }
}
